/** TLS failures told apart: which ones configuration must fix, and which setting to look at. */

/** OpenSSL verification codes meaning "this chain does not lead to a CA we trust". */
const UNTRUSTED = new Set([
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_UNTRUSTED",
  "CERT_SIGNATURE_FAILURE",
]);

/** The error and its causes, outermost first (kafkajs wraps the last attempt's error in `cause`). */
export function errorChain(
  err: unknown,
): { name?: string; message?: string; code?: string; type?: string }[] {
  const chain = [];
  for (let e = err, depth = 0; e && typeof e === "object" && depth < 8; depth++) {
    chain.push(e as { name?: string; message?: string; code?: string; type?: string });
    e =
      (e as { cause?: unknown; originalError?: unknown }).cause ??
      (e as { originalError?: unknown }).originalError;
  }
  return chain;
}

/**
 * Classifies what a TLS handshake failure means for the operator. `code` is Node's error code; for
 * alerts sent by the other side it is ERR_SSL_<alert>.
 */
export function tlsProblem(
  code: string,
  peer: string,
  caVariable: string,
  clientCertHint?: string,
): string | undefined {
  if (UNTRUSTED.has(code)) {
    return `certificate of ${peer} not trusted (${code}): set ${caVariable} to the PEM file of the CA that signed it`;
  }
  if (code === "CERT_HAS_EXPIRED" || code === "CERT_NOT_YET_VALID") {
    return `certificate of ${peer} is not valid now (${code}): the server needs a current certificate`;
  }
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID") {
    return `certificate of ${peer} does not name that host (${code}): connect by a name the certificate lists`;
  }
  if (code === "ERR_SSL_WRONG_VERSION_NUMBER") {
    return `${peer} does not speak TLS on that port (${code}): check the address, or the security protocol setting`;
  }
  if (clientCertHint && /^ERR_SSL_.*(CERTIFICATE|UNKNOWN_CA|HANDSHAKE_FAILURE)/.test(code)) {
    return `${peer} refused the TLS handshake (${code}): ${clientCertHint}`;
  }
  return undefined;
}

/** True when a TLS error code is one that only configuration (a CA, a certificate, an address) fixes. */
export function isTlsConfigurationCode(code: string): boolean {
  return tlsProblem(code, "server", "the CA setting", "client certificate") !== undefined;
}
