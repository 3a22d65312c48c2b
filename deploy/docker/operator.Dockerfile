# The Kiln operator image: the Go operator, and the kiln binary whose planner (`kiln plan`) sizes
# generative models, so the planner lives once, in C++. Build from the repository root after the
# server image (its kiln binary is copied from it):
#   docker build -f deploy/docker/operator.Dockerfile \
#     --build-arg SERVER_IMAGE=ghcr.io/kiln-ai/kiln:0.1.0 -t ghcr.io/kiln-ai/kiln-operator:0.1.0 .
ARG SERVER_IMAGE=ghcr.io/kiln-ai/kiln:0.1.0
FROM ${SERVER_IMAGE} AS server

FROM golang:1.26-bookworm AS build
WORKDIR /src/operator
COPY operator/go.mod operator/go.sum ./
RUN go mod download
COPY operator/ ./
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/kiln-operator ./cmd

FROM server
COPY --from=build /out/kiln-operator /usr/local/bin/kiln-operator
USER 10001
ENTRYPOINT ["/usr/local/bin/kiln-operator"]
