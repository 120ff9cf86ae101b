#!/usr/bin/env bash
# Fails when a C source or header of the repository is not formatted as .clang-format says
# (clang-format --dry-run -Werror lists each place). Run by meson as the test `format`.
set -uo pipefail
cd "$(dirname "$0")/../.."
if ! command -v clang-format >/dev/null; then
  echo "clang-format not found: install it (scripts/install-deps.sh --test)" >&2
  exit 1
fi
mapfile -t files < <(git ls-files '*.c' '*.h' 2>/dev/null || find src include tests bench -name '*.[ch]')
if [[ ${#files[@]} -eq 0 ]]; then
  echo "no C sources found" >&2
  exit 1
fi
clang-format --dry-run -Werror "${files[@]}"
