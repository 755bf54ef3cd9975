#!/usr/bin/env bash
# Idempotent set-up of everything the package needs on a Debian 12 machine, inside the repo:
#   .venv (Python 3.11) with requirements.txt (ROS 2 Kilted wheels, torch CPU, ONNX Runtime, ...),
#   the msg/ build + install of the ament package into .venv (build/), and the hand mesh asset
#   (.cache/hand_asset). Each step is skipped when it is already done, so a second run takes seconds.
# No sourced ROS environment is needed before or after; nothing is written outside the repo and TMPDIR.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$ROOT/.venv
PY=${PYTHON:-python3.11}
export ROS_HOME=${ROS_HOME:-$ROOT/.ros}
export ROS_LOG_DIR=${ROS_LOG_DIR:-$ROS_HOME/log}
say() { printf '[setup] %s\n' "$*"; }

# 1. System tools. A fresh Debian 12 build machine has them; install what is missing when root.
missing=()
command -v "$PY" >/dev/null || missing+=(python3.11 python3.11-venv)
command -v cmake >/dev/null || missing+=(cmake)
command -v g++ >/dev/null || missing+=(g++)
command -v npm >/dev/null || missing+=(npm)
[ -e /usr/lib/x86_64-linux-gnu/libEGL_mesa.so.0 ] || [ -e /usr/lib/aarch64-linux-gnu/libEGL_mesa.so.0 ] \
  || missing+=(libegl1 libegl-mesa0 libgl1-mesa-dri)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing system packages: ${missing[*]}"
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "[setup] error: missing system packages: ${missing[*]}; install them with" \
         "'sudo apt-get install ${missing[*]}' and run this again." >&2
    exit 1
  fi
fi

# 2. Python environment, re-synced only when requirements.txt changes.
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  "$PY" -m venv "$VENV"
fi
req_hash=$(sha256sum "$ROOT/requirements.txt" | cut -d' ' -f1)
if [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$req_hash" ]; then
  say "installing requirements.txt into .venv (first time: about 2 minutes)"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$ROOT/requirements.txt" \
    > "$VENV/pip.log" 2>&1 || { tail -20 "$VENV/pip.log" >&2; echo "[setup] error: pip failed, see $VENV/pip.log" >&2; exit 1; }
  echo "$req_hash" > "$VENV/.requirements.sha256"
fi

# 3. The ament package (messages, Python packages, launchers, launch/config) into the venv prefix,
#    as colcon would install it on a robot. cmake only rebuilds what changed.
export AMENT_PREFIX_PATH=$VENV
if [ ! -f "$ROOT/build/CMakeCache.txt" ]; then
  say "configuring the ament package (build/)"
  cmake -S "$ROOT" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$VENV" -DCMAKE_INSTALL_PREFIX="$VENV" \
    -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF \
    -DCMAKE_PROJECT_INCLUDE="$ROOT/cmake/pypi_wheel_includes.cmake" > "$ROOT/build.log" 2>&1 \
    || { echo "[setup] error: cmake configure failed, see $ROOT/build.log" >&2; exit 1; }
fi
{ cmake --build "$ROOT/build" -j"$(nproc)" && cmake --install "$ROOT/build"; } >> "$ROOT/build.log" 2>&1 \
  || { echo "[setup] error: building msg/ failed, see $ROOT/build.log" >&2; exit 1; }

# 4. The hand mesh for the renderer (hand_cpm_train.synth): the MIT-licensed WebXR generic-hand
#    meshes from the npm registry, kept with their licence in .cache/hand_asset.
ASSET=$ROOT/.cache/hand_asset
ASSET_PACKAGE=@webxr-input-profiles/assets@1.0.20
if [ ! -f "$ASSET/right.glb" ] || [ ! -f "$ASSET/left.glb" ] || [ ! -f "$ASSET/LICENSE.md" ]; then
  say "fetching the hand mesh ($ASSET_PACKAGE, about 94 MB, once)"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$ASSET_PACKAGE" >/dev/null) \
    || { echo "[setup] error: 'npm pack $ASSET_PACKAGE' failed: the renderer needs it; check npm's registry access" >&2; exit 1; }
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/LICENSE.md package/package.json \
    package/dist/profiles/generic-hand/left.glb package/dist/profiles/generic-hand/right.glb
  mkdir -p "$ASSET"
  cp "$tmp"/package/dist/profiles/generic-hand/{left,right}.glb "$tmp"/package/{LICENSE.md,package.json} "$ASSET"/
  rm -rf "$tmp"
fi

"$VENV/bin/python" -c "from hand_cpm_ros.msg import HandKeypoints, HandKeypointsArray" \
  || { echo "[setup] error: the generated messages do not import; see $ROOT/build.log" >&2; exit 1; }
say "ready: $VENV"
