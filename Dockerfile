# One image for the api, the ingest worker and the simulator; the command picks which.
FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY common ./common
COPY ingest ./ingest
COPY api ./api
USER node
CMD ["node", "--import", "tsx", "api/main.ts"]
