# The Kiln server image: `kiln serve` and `kiln model pull`, as the operator's Deployments and
# pull Jobs run them. Build from the repository root:
#   docker build -f deploy/docker/server.Dockerfile -t ghcr.io/kiln-ai/kiln:0.1.0 .
FROM debian:12 AS build
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      build-essential cmake ninja-build pkg-config nlohmann-json3-dev libpcre2-dev libcli11-dev \
      libboost1.81-dev libjpeg62-turbo-dev libpng-dev libgif-dev libwebp-dev libssl-dev \
      libcurl4-openssl-dev libarchive-dev python3 python3-pip unzip ca-certificates debian-archive-keyring \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY cmake cmake
COPY scripts scripts
COPY src src
# ONNX Runtime: headers from Debian 13's libonnxruntime-dev, the library from the PyPI wheel.
RUN KILN_CACHE=/opt/kiln-deps bash scripts/install_onnxruntime.sh
# nvcc from NVIDIA's PyPI wheels, for the vllm runtime's CUDA kernels (the CUDA runtime is linked
# statically; the driver comes from the node, e.g. through the NVIDIA container toolkit).
RUN KILN_CACHE=/opt/kiln-deps bash scripts/install_cuda.sh
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DKILN_BUILD_TESTS=OFF \
      -DKILN_DEPS_DIR=/opt/kiln-deps/deps -DKILN_CUDA=ON \
      -DCMAKE_CUDA_COMPILER=/opt/kiln-deps/cuda/bin/nvcc \
    && cmake --build build --target kiln

FROM debian:12-slim
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      libpcre2-8-0 libjpeg62-turbo libpng16-16 libgif7 libwebp7 libwebpdemux2 libssl3 libcurl4 \
      libarchive13 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --create-home --home-dir /var/lib/kiln kiln
COPY --from=build /opt/kiln-deps/deps/onnxruntime/lib/ /usr/local/lib/
COPY --from=build /src/build/src/kiln/kiln /usr/local/bin/kiln
RUN ldconfig
USER 10001
ENV KILN_HOME=/var/lib/kiln
EXPOSE 8080
ENTRYPOINT ["kiln"]
CMD ["serve", "--host", "0.0.0.0"]
