# The benchmark's tokens, sourced by scripts/bench and scripts/bench-startup.
#
# bench_seed BIN CONFIG DATA_DIR OUT -- BENCH_TOKENS tokens of the user-owned type `bench`
#   (prefix lkb) for bench@example.com in the SQLite database under DATA_DIR (the config's
#   data_dir), their secrets in OUT, one per line. With BENCH_SEEDED=<dir>, <dir>/data and
#   <dir>/all.txt (seeded the same way before: a million tokens take minutes) are copied
#   instead, every last use set to now (as if the instance had served them until a moment ago,
#   so a first use after the start is not also a last-use write), and BENCH_TOKENS becomes the
#   file's length.
bench_seed() {
  local bin="$1" config="$2" data_dir="$3" out="$4"
  if [ -n "${BENCH_SEEDED:-}" ]; then
    echo "# copying the seeded database in $BENCH_SEEDED" >&2
    cp -r "$BENCH_SEEDED/data" "$data_dir"
    cp "$BENCH_SEEDED/all.txt" "$out"
    python3 -c 'import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1]); c.execute("UPDATE tokens SET last_used_at = ?", (int(time.time()),)); c.commit()' \
      "$data_dir/latchkey.db"
    BENCH_TOKENS=$(wc -l <"$out")
  else
    echo "# seeding $BENCH_TOKENS tokens in $data_dir" >&2
    "$bin" --config "$config" bench seed --email bench@example.com --token-type bench \
      --count "$BENCH_TOKENS" --out "$out" >&2
  fi
}
