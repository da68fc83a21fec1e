#!/usr/bin/env bash
# Build the C core fresh with AddressSanitizer and UndefinedBehaviorSanitizer and run
# the C-heavy test modules against it. Any report fails the run.
#
#   bash csrc/sanitize.sh [PYTHON] [pytest args...]
#
# The build happens in a temporary copy of the sources (setup.py build_ext
# --inplace, never through pip, whose cache would hand back a wheel built without
# the flags), and the tests import that copy first (PYTHONPATH); the script checks
# that the imported core really carries the sanitizer. CPython itself is not
# instrumented, so libasan is preloaded and leak detection is off (the interpreter
# keeps memory until exit by design). ThreadSanitizer needs a CPython built with
# it; see docs/design.md.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${1:-python3}
shift || true

modules=(tests/test_binding.py tests/test_keyring.py tests/test_store.py
         tests/test_self_healing.py tests/test_client.py tests/test_alerts.py
         tests/test_names.py tests/test_session_policy.py)
[[ $# -gt 0 ]] && modules=("$@")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r setup.py pyproject.toml README.md LICENSE csrc pysrc "$work"/
find "$work/pysrc" -name '*.so' -delete
flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g"
(
    # A build environment of its own with the build requirements pyproject.toml
    # names (the test venv's setuptools may be older than they allow).
    cd "$work"
    "$python" -m venv buildenv
    buildenv/bin/pip install -q 'setuptools>=77' 'cffi>=1.17' >"$work/build.log" 2>&1 ||
        { cat "$work/build.log"; exit 1; }
    CFLAGS="$flags" LDFLAGS="-fsanitize=address,undefined" \
        buildenv/bin/python setup.py -q build_ext --inplace >>"$work/build.log" 2>&1 ||
        { cat "$work/build.log"; exit 1; }
)
core=$(ls "$work"/pysrc/tlsresume/_core*.so)
symbols=$(nm -D "$core")
[[ $symbols == *__asan_init* && $symbols == *__ubsan_* ]] ||
    { echo "sanitize: $core was not built with the sanitizers" >&2; exit 1; }

libasan=$(gcc -print-file-name=libasan.so)
libubsan=$(gcc -print-file-name=libubsan.so)
export LD_PRELOAD="$libasan $libubsan"
# Reports go to files (pytest captures stderr, and an aborted run loses it);
# every one of them is printed, and any one fails the run.
reports="$work/reports"
mkdir -p "$reports"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1:detect_odr_violation=0:log_path=$reports/asan
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:log_path=$reports/ubsan
export PYTHONPATH="$work/pysrc${PYTHONPATH:+:$PYTHONPATH}"
export TLSRESUME_SANITIZED=1
"$python" -c "import tlsresume._core as c; f = c.__file__; assert f.startswith('$work'), f"
echo "sanitize: core built with $flags; running ${modules[*]}"
status=0
"$python" -m pytest -q -p no:cacheprovider "${modules[@]}" || status=$?
if compgen -G "$reports/*" >/dev/null; then
    cat "$reports"/*
    echo "sanitize: the sanitizers reported the errors above" >&2
    exit 1
fi
((status == 0)) || { echo "sanitize: the tests failed (exit $status)" >&2; exit "$status"; }
echo "sanitize: no report"
