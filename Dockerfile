# One image for the API, the ingest worker and the simulator; the command picks which:
#   node dist/api/main.js           the API (the default command)
#   node dist/ingest/main.js        the ingest worker
#   node dist/ingest/simulator.js   the simulator (add --help for its options)
# test/integration/dockerfile.test.ts replays these instructions and runs each command.
ARG NODE_VERSION=20

# Compiles the TypeScript to plain ESM JavaScript in dist/ (emit only: `npm run typecheck` checks types).
FROM node:${NODE_VERSION}-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY common ./common
COPY ingest ./ingest
COPY api ./api
RUN npm run build

# Production dependencies and the compiled code only: no compiler, no tsx, no sources.
FROM node:${NODE_VERSION}-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY --from=build /app/dist ./dist
USER node
EXPOSE 8080 9464
CMD ["node", "dist/api/main.js"]
