#!/usr/bin/env bash
# Installs the Debian packages recon needs, only those missing (fast when all are there).
set -euo pipefail

packages=(
  python3 python3-venv python3-dev      # Python 3.11 on Debian 12, venv with pip
  libusb-1.0-0                          # open3d
  libegl1 libgl1-mesa-dri libegl-mesa0  # headless OpenGL (moderngl on EGL, llvmpipe)
  mesa-vulkan-drivers                   # Open3D's offscreen renderer
  chromium                              # browser tests of the viewer (Playwright drives it)
  redis-server                          # the Celery broker of `recon worker` (and its tests)
)
# Node.js may come from elsewhere (NodeSource ships npm inside nodejs): only add Debian's when absent.
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)

missing=()
for package in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$package")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "installing system packages: ${missing[*]}"
if [[ $(id -u) -eq 0 ]]; then
  apt_get=(apt-get)
elif command -v sudo >/dev/null 2>&1; then
  apt_get=(sudo apt-get)
else
  echo "error: missing system packages (${missing[*]}) and not root; run as root or install them:" >&2
  echo "  apt-get install ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${apt_get[@]}" update -q
"${apt_get[@]}" install -y -q --no-install-recommends "${missing[@]}"
