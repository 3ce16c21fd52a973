#!/usr/bin/env bash
# `swift format lint` (the toolchain's) with the project's .swift-format, over every
# hand-written Swift file (the generated *.pb.swift are left out). CI budget: ~15 s.
#
# The rules in .swift-format are enforced: any finding of a rule fails. The pretty-printer's
# layout findings (Indentation, AddLines, RemoveLine, Spacing, LineLength, TrailingComma) are
# not: the tree aligns continuation lines with the opening parenthesis, which swift-format's
# printer does not do, and reformatting every file is not worth the churn. Trailing
# whitespace is a layout finding that is enforced.
set -euo pipefail
cd "$(dirname "$0")/.."
layout='\[(Indentation|AddLines|RemoveLine|Spacing|LineLength|TrailingComma)\]'
files=$(find Sources Tests -name '*.swift' ! -name '*.pb.swift' | sort; echo Package.swift)
# shellcheck disable=SC2086
findings=$(swift format lint --strict --parallel --configuration .swift-format $files 2>&1 | grep -Ev "$layout" || true)
if [ -n "$findings" ]; then
    echo "$findings"
    echo "lint: $(echo "$findings" | grep -c 'error:') finding(s); see .swift-format for the rules" >&2
    exit 1
fi
echo "lint: $(echo "$files" | wc -l) files pass the .swift-format rules"
