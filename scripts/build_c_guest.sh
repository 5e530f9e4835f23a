#!/usr/bin/env bash
# Build the bundled C guest (smpxen/guests/c) into an ELF32 i386 Xen 2.0 image.
#
#   scripts/build_c_guest.sh [OUT.elf]     (default: <repo>/build/guests/hello.elf)
#
# Works from any directory; OUT is taken relative to the caller's directory.
# CC may be set to another gcc-compatible compiler (default: gcc).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
src="$repo/smpxen/guests/c"
out="${1:-$repo/build/guests/hello.elf}"
cc="${CC:-gcc}"

die() { echo "build_c_guest.sh: $*" >&2; exit 1; }

command -v "$cc" >/dev/null 2>&1 || die "compiler '$cc' not found (install gcc, or set CC)"

cflags=(-m32 -ffreestanding -fno-pic -fno-pie -fno-stack-protector -nostdlib -static
        -O2 -Wall -Wextra -std=gnu11
        -fno-builtin -fno-asynchronous-unwind-tables -fno-unwind-tables
        -fcf-protection=none -mno-sse -mno-mmx -mno-80387)
ldflags=(-no-pie -Wl,-T,"$src/guest.ld" -Wl,--build-id=none -Wl,-z,noexecstack)

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Probe: can this compiler build and link a 32-bit x86 freestanding program?
printf 'void _start(void) { for (;;) ; }\n' > "$tmp/probe.c"
if ! "$cc" "${cflags[@]}" -no-pie "$tmp/probe.c" -o "$tmp/probe" >"$tmp/probe.log" 2>&1; then
    echo "build_c_guest.sh: '$cc' cannot build 32-bit x86 code (-m32 unsupported?)." >&2
    echo "  On Debian/Ubuntu: apt-get install gcc-multilib (x86 hosts) or a gcc-i686-linux-gnu cross compiler (set CC)." >&2
    sed 's/^/  | /' "$tmp/probe.log" >&2
    exit 1
fi

mkdir -p "$(dirname "$out")"
"$cc" "${cflags[@]}" "${ldflags[@]}" -I"$src" \
    "$src/head.S" "$src/hello.c" -o "$tmp/hello.elf" \
    || die "compiling the C guest failed"
mv -f "$tmp/hello.elf" "$out"
echo "$out"
