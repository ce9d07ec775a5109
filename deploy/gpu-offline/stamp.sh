#!/bin/bash
# Run on the dev machine just before the device call: writes the commit (and whether tracked files differ
# from it) to .offline-kit/COMMIT, which the git stand-in (nogit/git) reports on the GPU machine. Also removes
# the redis-server that a local test of env.sh unpacked (.offline-kit/redis/bin, lib: 3 MB more to carry).
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
commit=$(git rev-parse --short HEAD) || exit 1
git diff --quiet HEAD -- 2>/dev/null || commit="$commit + uncommitted changes"
rm -rf .offline-kit/redis/bin .offline-kit/redis/lib
mkdir -p .offline-kit && echo "$commit" > .offline-kit/COMMIT && echo "stamped: $commit"
