#!/usr/bin/env bash
# Builds OpenWrt's real firewall (fw4) for the lab's router: libubox, uci, ubus and ucode (with
# its fs/uci/ubus modules) from source, plus firewall4's scripts, installed into a cache dir keyed
# by the sources:
#   ${NATGATE_CACHE:-/var/cache/natgate}/fw4-<12 hex>/{bin,lib,lib/ucode,share,include,root/...}
# root/ is firewall4's own tree (root/sbin/fw4, root/usr/share/firewall4, root/etc/config/firewall...).
# test/lab/fw4.ts mounts these where OpenWrt has them, inside the router's mount namespace only.
#
#   scripts/build-fw4.sh              build unless the cache dir exists (it only appears complete)
#   scripts/build-fw4.sh --print-dir  print the cache dir for the current sources, build nothing
#
# Sources: the `git archive` tarballs in ../shared/third_party/openwrt/ (or $NATGATE_OPENWRT_SRC);
# without them, the same commits are fetched from the public repositories.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
src=${NATGATE_OPENWRT_SRC:-$repo/../shared/third_party/openwrt}
cache=${NATGATE_CACHE:-/var/cache/natgate}

# name, repository, commit: the same commits as the archives (see their README.md); the build
# order matters (uci and ubus link libubox, ucode links all three).
COMPONENTS=(
  "libubox https://github.com/openwrt/libubox.git 1aa36ee774c8db4d7a396903e0d2e1fb79ee8bf1"
  "uci https://github.com/openwrt/uci.git 66127cd76c5d0bd46d5a90302cc6110f53a4e2f8"
  "ubus https://github.com/openwrt/ubus.git 3cc98db1a422dcf560f2d6347fd410f17565a89d"
  "ucode https://github.com/jow-/ucode.git 81205a25437a83e3b9e1eb55ac169be84453d53b"
  "firewall4 https://github.com/openwrt/firewall4.git b6e5157527d361f99ad52eaa6da273cb0f2dfd59"
)

archive_of() { # name commit -> path of its archive (the file name carries the short commit)
  echo "$src/$1-${2:0:12}.tar.gz"
}

have_archives=1
for c in "${COMPONENTS[@]}"; do
  read -r name _ commit <<<"$c"
  [[ -f $(archive_of "$name" "$commit") ]] || have_archives=
done

# The key: every archive's content (or, when cloning, every commit) and this script (its flags).
key=$({
  for c in "${COMPONENTS[@]}"; do
    read -r name _ commit <<<"$c"
    if [[ -n $have_archives ]]; then
      printf '%s %s\n' "$name" "$(sha256sum <"$(archive_of "$name" "$commit")" | cut -d' ' -f1)"
    else
      printf '%s %s\n' "$name" "$commit"
    fi
  done
  sha256sum <"${BASH_SOURCE[0]}"
} | sha256sum | cut -c1-12)
dest=$cache/fw4-$key

complete() { # the files fw4 needs; the dir only appears by rename, this guards against tampering
  local f
  for f in bin/ucode bin/utpl lib/ucode/fs.so lib/ucode/uci.so lib/ucode/ubus.so \
    root/sbin/fw4 root/usr/share/firewall4/main.uc root/usr/share/ucode/fw4.uc \
    root/etc/config/firewall root/usr/share/nftables.d/README; do
    [[ -e $1/$f ]] || return 1
  done
}

if [[ ${1:-} == --print-dir ]]; then
  echo "$dest"
  exit 0
fi
if complete "$dest"; then exit 0; fi

for tool in cmake make pkg-config cc tar; do
  command -v "$tool" >/dev/null || {
    echo "build-fw4: $tool is missing; run scripts/install-deps.sh (as root) first" >&2
    exit 1
  }
done
pkg-config --exists json-c || {
  echo "build-fw4: json-c headers are missing; install Debian's libjson-c-dev (scripts/install-deps.sh)" >&2
  exit 1
}
if [[ -z $have_archives ]] && ! command -v git >/dev/null; then
  echo "build-fw4: no source archives in $src and no git to fetch the commits listed in this script;" \
    "put the archives there (or set NATGATE_OPENWRT_SRC) or install git" >&2
  exit 1
fi

mkdir -p "$cache"
# One build at a time; a second caller waits, then finds the cache complete.
exec 9>"$cache/.fw4.lock"
flock 9
if complete "$dest"; then exit 0; fi

# Staged next to the destination (same file system) so the final step is one rename: an
# interrupted build leaves only a .fw4-build.* dir, which the next run removes.
rm -rf "$cache"/.fw4-build.*
work=$(mktemp -d "$cache/.fw4-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
stage=$work/stage # DESTDIR: files land in $stage$dest, built for their final path $dest
start=$SECONDS

echo "== building OpenWrt's fw4 into $dest"
for c in "${COMPONENTS[@]}"; do
  read -r name url commit <<<"$c"
  if [[ -n $have_archives ]]; then
    tar -xzf "$(archive_of "$name" "$commit")" -C "$work"
  else
    echo "build-fw4: no archives in $src, fetching $url at $commit"
    git init -q "$work/$name"
    # GitHub serves a commit by its id; a full clone is the fallback for servers that do not
    if ! git -C "$work/$name" fetch -q --depth 1 "$url" "$commit" 2>/dev/null; then
      git -C "$work/$name" fetch -q "$url" || {
        echo "build-fw4: cannot fetch $url; no source archives in $src either" >&2
        exit 1
      }
    fi
    git -C "$work/$name" -c advice.detachedHead=false checkout -q "$commit"
  fi
  [[ -d $work/$name ]] || { echo "build-fw4: $name's sources did not unpack into $work/$name" >&2; exit 1; }
done

jobs=$(nproc 2>/dev/null || echo 2)
cmake_build() { # name, extra cmake flags...
  local name=$1
  shift
  (
    cd "$work/$name"
    cmake -S . -B build -Wno-dev -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_INSTALL_PREFIX="$dest" -DCMAKE_INSTALL_LIBDIR=lib \
      -DCMAKE_PREFIX_PATH="$stage$dest" -DCMAKE_INSTALL_RPATH="$dest/lib" \
      "$@" >build.log 2>&1 &&
      make -C build -j"$jobs" >>build.log 2>&1 &&
      make -C build install DESTDIR="$stage" >>build.log 2>&1
  ) || {
    echo "build-fw4: building $name failed; the end of its log:" >&2
    tail -n 30 "$work/$name/build.log" >&2
    exit 1
  }
}

cmake_build libubox -DBUILD_LUA=OFF -DBUILD_EXAMPLES=OFF
cmake_build uci -DBUILD_LUA=OFF -DBUILD_EXAMPLES=OFF
cmake_build ubus -DBUILD_LUA=OFF -DBUILD_EXAMPLES=OFF
cmake_build ucode -DUBUS_SUPPORT=ON -DUCI_SUPPORT=ON -DRTNL_SUPPORT=OFF -DNL80211_SUPPORT=OFF \
  -DZLIB_SUPPORT=OFF -DDIGEST_SUPPORT=OFF

# firewall4 is scripts: keep its root/ tree as it is, the lab mounts pieces of it.
cp -a "$work/firewall4/root" "$stage$dest/root"
chmod -R go-w "$stage$dest/root" # the archive's dirs are group-writable
for c in "${COMPONENTS[@]}"; do
  read -r name url commit <<<"$c"
  printf '%s %s %s\n' "$name" "$url" "$commit"
done >"$stage$dest/SOURCES"

complete "$stage$dest" || { echo "build-fw4: the build is missing files fw4 needs (see complete() in $0)" >&2; exit 1; }

mv -T "$stage$dest" "$dest"
# It must run, not just link: ucode loads its uci and fs modules, libuci through the rpath.
check='let u = require("uci"), f = require("fs"); print(type(u.cursor), " ", type(f.open), "\n");'
if ! out=$(env -u LD_LIBRARY_PATH "$dest/bin/ucode" -L "$dest/lib/ucode" -e "$check" 2>&1) ||
  [[ $out != "function function" ]]; then
  rm -rf "$dest"
  echo "build-fw4: the built ucode does not load its uci/fs modules: $out" >&2
  exit 1
fi
echo "== fw4 built in $((SECONDS - start)) s: $dest"
