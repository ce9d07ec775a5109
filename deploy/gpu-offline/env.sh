# shellcheck shell=bash
# The GPU machine's set-up for `python3 -m bench.gpu_check`, sourced in bash from the repository root:
#
#     source deploy/gpu-offline/env.sh; python3 -m bench.gpu_check --quick --out $OUT/GPU.md
#
# (`;`, not `&&`: the check runs even if part of the kit failed, so that one run still records what works,
# e.g. the model bench, which needs torch alone; this prints what is wrong and returns non-zero.)
#
# That machine has Python 3.12 with torch (CUDA) but none of the server's packages, no pip index and no
# redis-server. The kit is built by build.sh into the git-ignored .offline-kit/ (README.md beside this file).
# This:
# 1. exports PYTHONPATH = $GPUKIT_SITE (default /tmp/site; first, so that the carried grpcio, protobuf and
#    typing-extensions shadow older ones of the machine), the repository root (poselift, service, bench,
#    tests) and client/ (poselift_client); PATH = deploy/gpu-offline/bin (`poselift`: `python3 -m
#    poselift.cli`, what bench.loadkit.Server runs when the interpreter has no console script; and
#    `redis-server`: a wrapper that runs the carried one with LD_LIBRARY_PATH set for redis alone, so python
#    keeps the machine's libstdc++); and deploy/gpu-offline/nogit (a stand-in git) where git is missing or
#    the copied tree has no .git but .offline-kit/COMMIT was stamped (bench.gpu_check calls git without
#    catching its absence);
# 2. installs the carried wheels ($GPUKIT_WHEELS, default .offline-kit/wheels/*.whl, CPython 3.12 manylinux
#    x86-64) into a fresh $GPUKIT_SITE with pip (no index, no deps), else by unpacking them (unwheel.py);
# 3. unpacks the carried redis-server (.offline-kit/redis/redis-*.tar.xz) and runs it once;
# 4. sets PYTEST_ADDOPTS to --ignore a test module whose imports cannot be met here (schemathesis: its
#    wheels are too large to carry; tests/service/test_openapi_fuzz.py has no cuda test), since `pytest -m
#    cuda tests` imports every test module to collect it;
# 5. runs check.py: each carried package imports from $GPUKIT_SITE, the machine's packages are new enough,
#    the project's modules import, redis-server runs under bench.loadkit.RedisServer, `poselift` resolves.
# Every step has a time limit. Its output is also written to $OUT/gpukit.txt when $OUT is set. Nothing
# outside $GPUKIT_SITE, the repository's ignored .offline-kit/redis/ and that file is written.
# GPUKIT_WANT_PY (default 3.12) is the CPython the wheels are for (another one for a test with other wheels).

if [ -z "${BASH_VERSION:-}" ]; then
    echo "gpukit: source deploy/gpu-offline/env.sh from bash" >&2
    return 2 2>/dev/null || exit 2
fi
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    echo "gpukit: source this file (source deploy/gpu-offline/env.sh; python3 -m bench.gpu_check ...), don't run it" >&2
    exit 2
fi

_gpukit_say() { echo "gpukit: $*" | tee -a "$_gpukit_log" >&2; }
_gpukit_show() { cat "$1" | tee -a "$_gpukit_log" >&2; }  # a step's output, shown and kept

_gpukit_setup() {
    local root kit redis site wheels py want have out rc=0 pair mod file tmo tarball
    kit=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P) || return 1  # deploy/gpu-offline
    root=$(cd "$kit/../.." && pwd -P) || return 1
    redis=$root/.offline-kit/redis
    site=${GPUKIT_SITE:-/tmp/site}
    wheels=${GPUKIT_WHEELS:-$root/.offline-kit/wheels}
    want=${GPUKIT_WANT_PY:-3.12}  # the wheels' CPython
    _gpukit_log=/tmp/gpukit.txt
    if [ -n "${OUT:-}" ] && [ -d "$OUT" ] && [ -w "$OUT" ]; then _gpukit_log=$OUT/gpukit.txt; fi
    : >"$_gpukit_log"
    out=$(mktemp)
    tmo=""
    command -v timeout >/dev/null 2>&1 && tmo=timeout
    _gpukit_say "repository $root; log $_gpukit_log"

    py=$(command -v python3) || { _gpukit_say "FAILED: no python3 on PATH"; return 1; }
    have=$("$py" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])') || {
        _gpukit_say "FAILED: $py does not run"; return 1; }
    _gpukit_say "python3 is $py, Python $have"

    # 1. the environment (first: whatever fails below, the model bench and what does work still run)
    export PYTHONPATH="$site:$root:$root/client${PYTHONPATH:+:$PYTHONPATH}"
    export PATH="$kit/bin:$PATH"
    export GPUKIT_PYTHON="$py"
    chmod +x "$kit/bin/redis-server" "$kit/bin/poselift" "$kit/nogit/git" 2>/dev/null
    if ! command -v git >/dev/null 2>&1 || { [ ! -e "$root/.git" ] && [ -s "$root/.offline-kit/COMMIT" ]; }; then
        export PATH="$kit/nogit:$PATH"
        _gpukit_say "git stand-in on PATH (commit: $(head -n 1 "$root/.offline-kit/COMMIT" 2>/dev/null || echo unknown))"
    fi

    # 2. the wheels, into a fresh $site (a warm machine may hold an older one)
    case "$site" in /|/tmp|/tmp/|"") _gpukit_say "FAILED: refusing GPUKIT_SITE=$site"; return 1 ;; esac
    if [ "${have%.*}" != "$want" ]; then
        _gpukit_say "FAILED: the carried wheels are for CPython $want, not $have: not installed"
        rc=1
    elif ! ls "$wheels"/*.whl >/dev/null 2>&1; then
        _gpukit_say "FAILED: no wheels in $wheels (the run's carry must name .offline-kit/wheels)"
        rc=1
    else
        rm -rf "$site" && mkdir -p "$site" || { _gpukit_say "FAILED: cannot create $site"; return 1; }
        _gpukit_say "installing $(ls "$wheels"/*.whl | wc -l) wheels into $site"
        if ! ${tmo:+timeout 300} "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
            --upgrade --disable-pip-version-check --target "$site" "$wheels"/*.whl >"$out" 2>&1; then
            _gpukit_show "$out"
            _gpukit_say "pip install failed (above); unpacking the wheels directly instead"
            rm -rf "$site" && mkdir -p "$site"
            if ! ${tmo:+timeout 300} "$py" "$kit/unwheel.py" "$site" "$wheels"/*.whl >"$out" 2>&1; then
                _gpukit_show "$out"
                _gpukit_say "FAILED: could not unpack the wheels either"
                rc=1
            fi
        fi
        # google is a namespace package (protobuf ships no google/__init__.py): a regular google package of
        # the machine's, later on sys.path, would win over the namespace portion here and bring its own
        # protobuf. A pkgutil-style package here comes first and still reaches the machine's other google.*.
        if [ -d "$site/google" ] && [ ! -e "$site/google/__init__.py" ]; then
            echo '__path__ = __import__("pkgutil").extend_path(__path__, __name__)' >"$site/google/__init__.py"
        fi
    fi

    # 3. redis-server: unpack the binary and its libraries next to the wrapper, run it once
    tarball=$(ls "$redis"/redis-*.tar.xz 2>/dev/null | head -n 1)
    if [ ! -x "$redis/bin/redis-server" ] && ! ${tmo:+timeout 60} "$py" -c '
import sys, tarfile
with tarfile.open(sys.argv[1]) as tar:
    if hasattr(tarfile, "data_filter"):
        tar.extractall(sys.argv[2], filter="data")
    else:
        tar.extractall(sys.argv[2])
' "$tarball" "$redis" >"$out" 2>&1; then
        _gpukit_show "$out"
        _gpukit_say "FAILED: could not unpack .offline-kit/redis/redis-*.tar.xz (the run's carry must name .offline-kit/redis)"
        rc=1
    elif ! ${tmo:+timeout 30} "$kit/bin/redis-server" --version >"$out" 2>&1; then
        _gpukit_show "$out"
        LD_LIBRARY_PATH="$redis/lib" ldd "$redis/bin/redis-server" 2>&1 | grep -i "not found" >"$out"
        _gpukit_show "$out"
        _gpukit_say "FAILED: the carried redis-server does not run here (libraries 'not found' above are missing"
        _gpukit_say "        on this machine); bench.load's serving step needs it"
        rc=1
    fi

    # 4. test modules that cannot be imported here
    for pair in "schemathesis tests/service/test_openapi_fuzz.py" "jsonschema tests/service/rpc/test_deploy.py" \
        "pybvh tests/poselift/test_bvh.py"; do
        read -r mod file <<<"$pair"
        if ! ${tmo:+timeout 60} "$py" -c "import $mod" >/dev/null 2>&1; then
            export PYTEST_ADDOPTS="${PYTEST_ADDOPTS:+$PYTEST_ADDOPTS }--ignore=$root/$file"
            _gpukit_say "pytest ignores $file ($mod is not installed; no cuda test in it)"
        fi
    done

    # 5. the check
    ${tmo:+timeout 300} "$py" "$kit/check.py" "$site" >"$out" 2>&1 || rc=1
    _gpukit_show "$out"
    rm -f "$out"
    if [ "$rc" -ne 0 ]; then
        _gpukit_say "FAILED: see the problems above; the steps that need them will fail"
        return "$rc"
    fi
    _gpukit_say "ready (PYTHONPATH=$PYTHONPATH)"
}

_gpukit_setup
_gpukit_rc=$?
unset -f _gpukit_setup _gpukit_say _gpukit_show
unset _gpukit_log
return $_gpukit_rc
