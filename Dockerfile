# syntax=docker/dockerfile:1
# mycelis-memory: multi-stage build. The final stage holds only production dependencies (from the
# lockfile), the compiled service and the SQL migrations; it runs as a non-root user and carries no
# secrets (configuration comes from the environment at run time: k8s/base/memory-configmap.yaml and the
# Secret mycelis-memory-secrets).
#   docker build -t mycelis-memory:0.1.0 .
# test/e2e/image.test.ts reproduces the final stage without Docker by following its COPY and RUN lines:
# keep them simple (no globs, no variables in paths).

# The runtime: an exact release of a maintained Node.js LTS line (26: active LTS, supported until
# 2029-04-30; why 26 and not 24: README "Runtime"). Debian 12 (bookworm), as on the machines CI runs on.
# To move to the next line (or release): add its exact release with its integrity to scripts/node.sh and
# to LINES in .ci/run, admit it in package.json "engines" (and drop a line past its end of life, with
# @types/node following the oldest line kept), run .ci/run until every line passes, then set it here.
ARG NODE_IMAGE=node:26.12.1-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY src ./src
COPY web ./web
RUN npm run build

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
# --ignore-scripts: no production dependency needs an install script (protobufjs' only checks versions).
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY migrations ./migrations
# The node user of the base image, by number so Kubernetes can verify runAsNonRoot. Files stay owned by
# root: the process cannot modify its own code.
USER 1000:1000
EXPOSE 50051 8080
# The service shuts down on SIGTERM within SHUTDOWN_TIMEOUT (default 20s): health NOT_SERVING, flush,
# commit, ack, end streams, drain NATS.
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "dist/src/cli.js"]
CMD ["serve"]
