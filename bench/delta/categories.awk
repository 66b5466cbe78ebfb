# categories.awk: where plumb's delta bytes go, by kind of file
# (bench/delta/run.sh feeds it the encoder trace: bytes, raw bytes, path).
function cat(p) {
  if (p ~ /^\(/) return p
  if (p ~ /^boot\/vmlinuz/) return "kernel (boot/vmlinuz)"
  if (p ~ /^boot\/initrd/) return "initramfs (boot/initrd.img)"
  if (p ~ /^(usr\/)?lib\/modules\//) return "kernel modules"
  if (p ~ /\.so(\.[0-9.]+)?$/) return "shared libraries"
  if (p ~ /^(usr\/)?(s?bin|libexec|lib\/systemd)\//) return "programs"
  if (p ~ /^(usr\/)?share\/(perl|perl5)\// || p ~ /\.pm$/) return "perl modules"
  if (p ~ /^(usr\/)?share\/zoneinfo\//) return "time zones"
  if (p ~ /^(usr\/)?share\/(doc|man|locale|info)\//) return "docs, man pages, locales"
  if (p ~ /^(usr\/)?(share\/ca-certificates|etc\/ssl)\//) return "CA certificates"
  return "other files"
}
{ c = cat($3); b[c] += $1; n[c]++; raw[c] += $2; tot += $1 }
END {
  printf "  %-30s %6s %12s %12s %7s\n", "category", "items", "image bytes", "delta bytes", "share"
  for (c in b) printf "  %-30s %6d %12d %12d %6.1f%%\n", c, n[c], raw[c], b[c], 100 * b[c] / tot | "sort -k1,1"
  close("sort -k1,1")
  printf "  %-30s %6s %12s %12d\n", "total (traced)", "", "", tot
}
