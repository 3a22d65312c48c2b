#!/usr/bin/env bash
# Installs ONNX Runtime into $KILN_DEPS_DIR/onnxruntime: the C/C++ API headers from Debian 13's
# libonnxruntime-dev (fetched through a private apt configuration; the machine's own apt sources
# stay as they are) and the shared library from the PyPI wheel. Safe to run twice.
source "$(dirname "$0")/common.sh"

PREFIX="$KILN_DEPS_DIR/onnxruntime"
STAMP="$PREFIX/.installed-$ONNXRUNTIME_VERSION-headers-$ONNXRUNTIME_HEADERS_DEB_VERSION"
if [ -f "$STAMP" ]; then
  log "ONNX Runtime $ONNXRUNTIME_VERSION: present in $PREFIX"
  exit 0
fi
rm -rf "$PREFIX"
mkdir -p "$PREFIX/include" "$PREFIX/lib"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

log "ONNX Runtime headers: downloading libonnxruntime-dev $ONNXRUNTIME_HEADERS_DEB_VERSION from Debian 13"
mkdir -p "$WORK/apt/lists/partial" "$WORK/apt/cache/archives/partial"
URI=""
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  URI="$(sed -n 's/^URIs: //p' /etc/apt/sources.list.d/debian.sources | head -n1 | awk '{print $1}')"
fi
if [ -z "$URI" ] && [ -f /etc/apt/sources.list ]; then
  URI="$(awk '$1=="deb"{for(i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list)"
fi
URI="${URI:-http://deb.debian.org/debian}"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $URI trixie main" \
  > "$WORK/apt/sources.list"
APT_OPTS=(-o "Dir::Etc::sourcelist=$WORK/apt/sources.list" -o "Dir::Etc::sourceparts=-"
          -o "Dir::State::Lists=$WORK/apt/lists" -o "Dir::Cache=$WORK/apt/cache")
apt-get "${APT_OPTS[@]}" update -q >/dev/null
(cd "$WORK" && apt-get "${APT_OPTS[@]}" download -q "libonnxruntime-dev=$ONNXRUNTIME_HEADERS_DEB_VERSION")
dpkg -x "$WORK"/libonnxruntime-dev_*.deb "$WORK/x"
cp -r "$WORK/x/usr/include/onnxruntime/." "$PREFIX/include/"

log "ONNX Runtime library: downloading the onnxruntime==$ONNXRUNTIME_VERSION wheel from PyPI"
python3 -m pip download -q --no-deps --only-binary :all: --python-version 3.11 \
  --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 \
  -d "$WORK/wheel" "onnxruntime==$ONNXRUNTIME_VERSION"
unzip -q -j -o "$WORK"/wheel/onnxruntime-*.whl \
  "onnxruntime/capi/libonnxruntime.so.$ONNXRUNTIME_VERSION" -d "$PREFIX/lib"
ln -sf "libonnxruntime.so.$ONNXRUNTIME_VERSION" "$PREFIX/lib/libonnxruntime.so.1"
ln -sf "libonnxruntime.so.1" "$PREFIX/lib/libonnxruntime.so"
touch "$STAMP"
log "ONNX Runtime $ONNXRUNTIME_VERSION: installed in $PREFIX"
