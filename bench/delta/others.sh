#!/usr/bin/env bash
# The known delta tools on the benchmark pair (bench/delta/pair.sh), one at a
# time. For each: delta bytes, create seconds, apply seconds, apply peak RSS
# (/usr/bin/time's "Maximum resident set size"), and a byte-for-byte check
# that the applied output equals v2.
#
#   bsdiff / bspatch, xdelta3 -9, zstd --patch-from --long=31 -19:
#       on rootfs.sqfs, rootfs.ext4 and rootfs.tar (KINDS selects: space
#       separated sqfs ext4 tar)
#   casync: make --store for v1 and v2 (image and tree); bytes = the chunk
#       files only v2's store has; apply = extract with v1 as seed
#   ostree: archive repo, commit both trees, static-delta generate;
#       bytes = the delta directory; apply = static-delta apply-offline into
#       a bare repo holding only v1's commit
#   full: v2's rootfs.sqfs
#
# Output: one TSV line per tool on stdout (tool, bytes, create s, apply s,
# apply RSS KiB; "-" where it does not apply), progress on stderr. Work files
# go to $OUT/work (deleted at the end). TOOLS selects a subset (space
# separated: bsdiff xdelta3 zstd casync ostree full). APPLY_RT=1 runs every
# apply under chrt -f 10 (SCHED_FIFO): on a machine shared with other work,
# the apply times of a core the tool has to itself.
#
# Every row depends only on the pair's images (built from pinned packages,
# byte for byte the same every time), the tools' versions and how this
# script measures (rows_version, raised whenever that changes): each row is
# kept in $OUT/others-KEY/TOOL-KIND.tsv, KEY a hash of all three, and a row
# already there is printed again with " *" after its name (and a note in
# $OUT/others.note) instead of being measured; OTHERS_FRESH=1 measures
# every row again. So a run that stopped half-way resumes, and two runs
# with different TOOLS fill the same rows. OTHERS_KEPT_ONLY=1 prints the
# rows not kept yet as "(not measured)" instead of measuring them.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-$PWD/out/bench/delta}
tools=${TOOLS:-bsdiff xdelta3 zstd casync ostree full}
kinds=${KINDS:-sqfs ext4 tar}
work=${WORK:-$out/work} # WORK: a separate directory lets two runs share a pair

need() { command -v "$1" >/dev/null || { echo "$1 not found: apt-get install $2" >&2; exit 1; }; }
need bsdiff bsdiff
need bspatch bsdiff
need xdelta3 xdelta3
need zstd zstd
need casync casync
need ostree ostree
[ -x /usr/bin/time ] || { echo "/usr/bin/time not found: apt-get install time" >&2; exit 1; }
for v in v1 v2; do
  for f in tree $(printf 'rootfs.%s ' $kinds); do
    [ -e "$out/$v/$f" ] || { echo "$out/$v/$f missing: run bench/delta/pair.sh" >&2; exit 1; }
  done
done

rows_version=1
key=$( (cat "$out/v1/rootfs.sqfs" "$out/v2/rootfs.sqfs"; echo "rows $rows_version"
  dpkg-query -W bsdiff xdelta3 zstd casync ostree 2>/dev/null) | sha256sum | cut -c1-16)
kept=$out/others-$key
mkdir -p "$kept"
rm -f "$out/others.note"

rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT

# timed FILE CMD...: runs CMD, writes "seconds maxrss_kib" to FILE.
timed() {
  local f=$1
  shift
  /usr/bin/time -o "$f" -f '%e %M' "$@"
}
# timed_apply FILE CMD...: timed, under SCHED_FIFO when APPLY_RT=1.
timed_apply() {
  if [ "${APPLY_RT:-}" = 1 ]; then
    local f=$1
    shift
    chrt -f 10 /usr/bin/time -o "$f" -f '%e %M' "$@"
  else
    timed "$@"
  fi
}
field() { cut -d' ' -f"$2" "$1"; }
size() { stat -c %s "$1"; }
same() {
  cmp -s "$1" "$2" || { echo "$3: applied output differs from $2" >&2; exit 1; }
}
row() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >"$rowfile.tmp"; mv "$rowfile.tmp" "$rowfile"; cat "$rowfile"; }

# measure NAME FUNCTION ARGS...: the row NAME from the kept rows, or from
# running FUNCTION (which ends by calling row).
measure() {
  local name=$1
  rowfile=$kept/$(printf '%s' "$1" | tr ' ' -).tsv
  shift
  if [ "${OTHERS_FRESH:-}" != 1 ] && [ -s "$rowfile" ]; then
    echo "== reusing $rowfile" >&2
    awk -F'\t' -v OFS='\t' '$3 != "-" { $1 = $1 " *" } 1' "$rowfile"
    [ -s "$out/others.note" ] || printf '* measured earlier by bench/delta/others.sh on these same images (sha256), tools and script (rows_version %s), kept in %s and reused; OTHERS_FRESH=1 measures again\n' "$rows_version" "$kept" >"$out/others.note"
    return 0
  fi
  if [ "${OTHERS_KEPT_ONLY:-}" = 1 ]; then
    echo "== $name: not kept, and OTHERS_KEPT_ONLY=1: left out" >&2
    printf '%s (not measured)\t-\t-\t-\t-\n' "$name"
    return 0
  fi
  "$@"
}

# bin_tool NAME KIND: a binary diff tool on $out/v{1,2}/rootfs.KIND.
bin_tool() {
  local name=$1 kind=$2
  local old=$out/v1/rootfs.$kind new=$out/v2/rootfs.$kind
  local p=$work/$name.$kind.patch o=$work/$name.$kind.out
  echo "== $name on rootfs.$kind" >&2
  case $name in
  bsdiff)
    timed "$work/c" bsdiff "$old" "$new" "$p"
    timed_apply "$work/a" bspatch "$old" "$o" "$p"
    ;;
  xdelta3)
    # -B: a source window as large as the old image, so xdelta3 can match
    # anywhere in it (its default window is 64 MiB).
    local b=$(( ($(size "$old") + 1048575) / 1048576 * 1048576 ))
    timed "$work/c" xdelta3 -9 -e -f -B "$b" -s "$old" "$new" "$p"
    timed_apply "$work/a" xdelta3 -d -f -B "$b" -s "$old" "$p" "$o"
    ;;
  zstd)
    timed "$work/c" zstd -q -f -T1 --patch-from="$old" --long=31 -19 "$new" -o "$p"
    timed_apply "$work/a" zstd -q -f -d --memory=2048MB --patch-from="$old" --long=31 "$p" -o "$o"
    ;;
  esac
  same "$o" "$new" "$name $kind"
  row "$name $kind" "$(size "$p")" "$(field "$work/c" 1)" "$(field "$work/a" 1)" "$(field "$work/a" 2)"
  rm -f "$p" "$o"
}

# casync_tool KIND: casync on the image (blob, .caibx) or the tree (.caidx).
casync_tool() {
  local kind=$1 ext src1 src2
  case $kind in
  sqfs) ext=caibx; src1=$out/v1/rootfs.sqfs; src2=$out/v2/rootfs.sqfs ;;
  tree) ext=caidx; src1=$out/v1/tree; src2=$out/v2/tree ;;
  esac
  echo "== casync on $kind" >&2
  local d=$work/casync.$kind
  mkdir -p "$d"
  casync make --store="$d/s1" "$d/v1.$ext" "$src1" >/dev/null
  timed "$work/c" casync make --store="$d/s2" "$d/v2.$ext" "$src2" >/dev/null
  # Bytes on the wire: the chunk files v2 needs that v1's store lacks.
  local bytes
  bytes=$(cd "$d/s2" && find . -type f -name '*.cacnk' | sort >"$d/l2" &&
    (cd "$d/s1" && find . -type f -name '*.cacnk' | sort) >"$d/l1" &&
    comm -23 "$d/l2" "$d/l1" | xargs -r stat -c %s | awk '{s+=$1} END {print s+0}')
  if [ "$kind" = sqfs ]; then
    timed_apply "$work/a" casync extract --store="$d/s2" --seed="$src1" "$d/v2.$ext" "$d/out" >/dev/null
    same "$d/out" "$src2" "casync $kind"
  else
    timed_apply "$work/a" casync extract --store="$d/s2" --seed="$src1" "$d/v2.$ext" "$d/out" >/dev/null
    diff -r --no-dereference "$d/out" "$src2" >/dev/null || { echo "casync tree: extracted tree differs" >&2; exit 1; }
  fi
  row "casync $kind" "$bytes" "$(field "$work/c" 1)" "$(field "$work/a" 1)" "$(field "$work/a" 2)"
  rm -rf "$d"
}

ostree_tool() {
  echo "== ostree static delta on the trees" >&2
  local d=$work/ostree
  mkdir -p "$d"
  ostree init --repo="$d/r" --mode=archive
  local c1 c2
  c1=$(ostree commit --repo="$d/r" --branch=v1 --tree=dir="$out/v1/tree" --timestamp=@1767225600 --no-xattrs)
  c2=$(ostree commit --repo="$d/r" --branch=v2 --tree=dir="$out/v2/tree" --timestamp=@1767225600 --no-xattrs)
  timed "$work/c" ostree static-delta generate --repo="$d/r" --from="$c1" --to="$c2" >/dev/null
  local bytes
  bytes=$(find "$d/r/deltas" -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}')
  # Apply: a repo that has v1's commit only, then check out v2 and compare.
  # A bare repo, as on a device (apply-offline refuses archive repos).
  ostree init --repo="$d/a" --mode=bare
  ostree pull-local --repo="$d/a" "$d/r" "$c1" >/dev/null
  # The delta's directory name is the two checksums in ostree's modified
  # base64: find it by its superblock.
  local sb
  sb=$(find "$d/r/deltas" -name superblock -printf '%h\n')
  [ "$(printf '%s\n' "$sb" | wc -l)" = 1 ] || { echo "ostree: expected one static delta, got: $sb" >&2; exit 1; }
  timed_apply "$work/a" ostree static-delta apply-offline --repo="$d/a" "$sb" >/dev/null
  ostree checkout --repo="$d/a" "$c2" "$d/co"
  diff -r --no-dereference "$d/co" "$out/v2/tree" >/dev/null || { echo "ostree: checked-out v2 differs" >&2; exit 1; }
  row "ostree static-delta" "$bytes" "$(field "$work/c" 1)" "$(field "$work/a" 1)" "$(field "$work/a" 2)"
  rm -rf "$d"
}

for t in $tools; do
  case $t in
  bsdiff | xdelta3 | zstd) for k in $kinds; do measure "$t $k" bin_tool "$t" "$k"; done ;;
  casync) measure "casync sqfs" casync_tool sqfs; measure "casync tree" casync_tool tree ;;
  ostree) measure "ostree static-delta" ostree_tool ;;
  full) rowfile=$work/full.tsv; row "full rootfs.sqfs" "$(size "$out/v2/rootfs.sqfs")" - - - ;;
  *) echo "unknown tool $t: expected bsdiff, xdelta3, zstd, casync, ostree or full" >&2; exit 2 ;;
  esac
done
