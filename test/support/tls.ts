/**
 * A throwaway PKI for TLS tests, made with openssl and keytool as an operator would: a CA, a
 * server certificate for 127.0.0.1/localhost (PEM, plus a PKCS#12 keystore and truststore for
 * Kafka), a client certificate with a plain and an encrypted key, and a second, unrelated CA.
 */
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";

export const STORE_PASSWORD = "keystore-secret";
export const CLIENT_KEY_PASSWORD = "client-key-secret";

export interface TestPki {
  dir: string;
  caFile: string;
  /** A CA that signed nothing here: trusting it is as good as trusting nobody. */
  otherCaFile: string;
  serverCertFile: string;
  serverKeyFile: string;
  /** PKCS#12 with the server key, its certificate and the CA chain. */
  keystoreFile: string;
  /** PKCS#12 holding the CA certificate only. */
  truststoreFile: string;
  clientCertFile: string;
  clientKeyFile: string;
  /** The client key encrypted with CLIENT_KEY_PASSWORD. */
  clientEncryptedKeyFile: string;
}

function openssl(dir: string, args: string[]): void {
  execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
}

function selfSignedCa(dir: string, name: string): void {
  openssl(dir, [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-days",
    "2",
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.pem`,
    "-subj",
    `/CN=${name}`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
}

function signedCertificate(dir: string, name: string, extensions: string): void {
  writeFileSync(join(dir, `${name}.ext`), extensions);
  openssl(dir, [
    "req",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.csr`,
    "-subj",
    `/CN=${name}`,
  ]);
  openssl(dir, [
    "x509",
    "-req",
    "-in",
    `${name}.csr`,
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-days",
    "2",
    "-out",
    `${name}.pem`,
    "-extfile",
    `${name}.ext`,
  ]);
}

export function createTestPki(dir: string): TestPki {
  selfSignedCa(dir, "ca");
  selfSignedCa(dir, "other-ca");
  signedCertificate(
    dir,
    "server",
    "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
  );
  signedCertificate(dir, "client", "extendedKeyUsage=clientAuth\n");
  openssl(dir, [
    "pkey",
    "-in",
    "client.key",
    "-aes256",
    "-passout",
    `pass:${CLIENT_KEY_PASSWORD}`,
    "-out",
    "client-encrypted.key",
  ]);
  openssl(dir, [
    "pkcs12",
    "-export",
    "-in",
    "server.pem",
    "-inkey",
    "server.key",
    "-certfile",
    "ca.pem",
    "-name",
    "broker",
    "-out",
    "keystore.p12",
    "-passout",
    `pass:${STORE_PASSWORD}`,
  ]);
  execFileSync(
    "keytool",
    [
      "-importcert",
      "-noprompt",
      "-alias",
      "ca",
      "-file",
      "ca.pem",
      "-keystore",
      "truststore.p12",
      "-storetype",
      "PKCS12",
      "-storepass",
      STORE_PASSWORD,
    ],
    { cwd: dir, stdio: ["ignore", "ignore", "pipe"] },
  );
  const at = (file: string) => join(dir, file);
  return {
    dir,
    caFile: at("ca.pem"),
    otherCaFile: at("other-ca.pem"),
    serverCertFile: at("server.pem"),
    serverKeyFile: at("server.key"),
    keystoreFile: at("keystore.p12"),
    truststoreFile: at("truststore.p12"),
    clientCertFile: at("client.pem"),
    clientKeyFile: at("client.key"),
    clientEncryptedKeyFile: at("client-encrypted.key"),
  };
}
