#!/usr/bin/env bash
# SQLite driver comparison: the same rows, schema and settings, inserted by rusqlite and by sqlx,
# three alternating rounds in one run. See BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
events=${1:-100000}
cargo build --release -q -p sealtrail-bench
cargo build --release -q --manifest-path crates/bench/sqlx-driver/Cargo.toml
rows=$(mktemp)
./target/release/bench rows --events "$events" --out "$rows"
for round in 1 2 3; do
  echo "round $round ($events rows, transactions of 500)"
  ./target/release/bench raw --rows "$rows"
  crates/bench/sqlx-driver/target/release/sqlx-driver "$rows"
done
rm -f "$rows"
