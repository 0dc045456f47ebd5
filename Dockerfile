# Case collaboration server image.
#   build:   Debian bookworm + Node 20. The mediasoup worker is compiled from Debian's own libraries
#            by the project's script (scripts/mediasoup/build-worker.sh, the same offline recipe as
#            a checkout), then the project's set-up step builds everything else (scripts/setup.mjs:
#            npm install from the lockfile, tsc, the browser client), then dev dependencies go.
#   runtime: bookworm-slim + Node 20 with only the worker's runtime libraries, as a non-root user.
# No secret is baked in: certificates, the master key, database and TURN credentials are mounted
# or passed in at run time (docker-compose.yml, deploy/).
FROM node:20-bookworm-slim AS build
# The worker's build packages (MEDIASOUP_BUILD_PACKAGES in scripts/setup.mjs) plus make and
# python3 for node-gyp (argon2 and better-sqlite3 compile when no prebuilt binary fits).
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libuv1-dev libsrtp2-dev libssl-dev libabsl-dev libusrsctp-dev nlohmann-json3-dev \
      meson ninja-build pkg-config g++ libnss3 libnspr4 \
      make python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY scripts/mediasoup/ scripts/mediasoup/
RUN MEDIASOUP_WORKER_CACHE=/tmp/mediasoup-cache bash scripts/mediasoup/build-worker.sh > /tmp/worker-path \
 && install -D -m 0755 "$(tail -n 1 /tmp/worker-path)" /opt/mediasoup/mediasoup-worker \
 && rm -rf /tmp/mediasoup-cache /tmp/worker-path
# mediasoup's postinstall skips its own download only when the worker is named; node-gyp uses the
# headers that ship with this Node instead of downloading them.
ENV MEDIASOUP_WORKER_BIN=/opt/mediasoup/mediasoup-worker \
    npm_config_nodedir=/usr/local
COPY package.json package-lock.json ./
# The install command of scripts/setup.mjs (why not `npm ci`: docs/operations.md), in a layer of
# its own so that a source change does not reinstall.
RUN npm install --no-audit --no-fund
COPY tsconfig.json ./
COPY scripts/ scripts/
COPY src/ src/
COPY client/ client/
RUN node scripts/setup.mjs \
 && npm prune --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim AS runtime
# Runtime libraries of the worker (Debian's libsrtp2 links NSS, hence libnss3 and libnspr4).
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libuv1 libssl3 libsrtp2-1 libusrsctp2 libabsl20220623 libnss3 libnspr4 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data \
 && chown node:node /data
ENV NODE_ENV=production \
    MEDIASOUP_WORKER_BIN=/opt/mediasoup/mediasoup-worker \
    DATA_DIR=/data \
    PORT=8443 \
    RTC_MIN_PORT=40000 \
    RTC_MAX_PORT=40099
WORKDIR /app
COPY --from=build /opt/mediasoup/mediasoup-worker /opt/mediasoup/mediasoup-worker
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules/ node_modules/
COPY --from=build /app/dist/ dist/
COPY --from=build /app/client/dist/ client/dist/
# The image's files belong to root and are read-only for the server, which runs as "node" (uid 1000).
USER node
VOLUME ["/data"]
# HTTPS (plain HTTP on the same port redirects) and the media ports: worker i listens on
# RTC_MIN_PORT + i, UDP and TCP. Publish the range each node uses 1:1 (docker-compose.yml).
EXPOSE 8443/tcp 40000-40099/udp 40000-40099/tcp
# /healthz over HTTPS on the loopback. Node does the request (the slim image has no curl); the
# certificate may be self-signed, and this check is about the process, not the certificate.
# Six misses (90 s) before "unhealthy" also covers the first start (no --start-period: the
# linter does not know that option).
HEALTHCHECK --interval=15s --timeout=5s --retries=6 \
  CMD ["node", "-e", "require('https').get({host:'127.0.0.1',port:process.env.PORT||8443,path:'/healthz',rejectUnauthorized:false,timeout:4000},r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1))"]
CMD ["node", "dist/main.js"]
