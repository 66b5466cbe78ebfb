// Command debian writes the manifest of the second delta benchmark pair
// (bench/delta/debian/manifest.tsv): a small Debian 12 server userspace at
// two sets of versions, read from apt's package indexes.
//
//	go run ./bench/delta/debian -lists /var/lib/apt/lists > bench/delta/debian/manifest.tsv
//
// The packages: priority required and important in bookworm, plus systemd,
// systemd-sysv, openssh-server, openssl, ca-certificates and curl, and
// their Depends and Pre-Depends, recursively (the first alternative of each;
// a virtual package by its first provider by name). v1 is each package's
// version in the bookworm suite (the point release); v2 is the newest
// version in bookworm, bookworm-updates and bookworm-security (the
// security and stable updates since). The kernel (linux-image-cloud-amd64's
// dependency) is listed as a kernel row: v1 the point release's ABI, v2
// bookworm-security's. Each row pins a version and the sha256 of its .deb
// as the index says; bench/delta/debian/pair.sh checks the files against
// it, so the pair cannot drift.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"pault.ag/go/debian/control"
	"pault.ag/go/debian/dependency"
	"pault.ag/go/debian/version"
)

var extra = []string{"systemd", "systemd-sysv", "openssh-server", "openssl", "ca-certificates", "curl"}

func main() {
	lists := flag.String("lists", "/var/lib/apt/lists", "apt's lists directory")
	flag.Parse()
	if err := run(*lists); err != nil {
		fmt.Fprintln(os.Stderr, "bench/delta/debian:", err)
		os.Exit(1)
	}
}

type pkg struct {
	suite string
	idx   control.BinaryIndex
}

func run(lists string) error {
	all := map[string][]pkg{}
	provides := map[string][]string{}
	for _, suite := range []string{"bookworm", "bookworm-updates", "bookworm-security"} {
		ms, _ := filepath.Glob(filepath.Join(lists, "*_dists_"+suite+"_main_binary-amd64_Packages*"))
		if len(ms) != 1 {
			return fmt.Errorf("%s: expected one Packages index of %s, found %d", lists, suite, len(ms))
		}
		out, err := exec.Command("/usr/lib/apt/apt-helper", "cat-file", ms[0]).Output()
		if err != nil {
			return fmt.Errorf("reading %s: %w", ms[0], err)
		}
		idx, err := control.ParseBinaryIndex(bufio.NewReader(strings.NewReader(string(out))))
		if err != nil {
			return fmt.Errorf("parsing %s: %w", ms[0], err)
		}
		for _, p := range idx {
			all[p.Package] = append(all[p.Package], pkg{suite, p})
			for _, name := range providedNames(p) {
				provides[name] = append(provides[name], p.Package)
			}
		}
	}
	point := func(name string) (control.BinaryIndex, bool) {
		for _, p := range all[name] {
			if p.suite == "bookworm" {
				return p.idx, true
			}
		}
		return control.BinaryIndex{}, false
	}
	newest := func(name string) control.BinaryIndex {
		best := all[name][0].idx
		for _, p := range all[name][1:] {
			if version.Compare(p.idx.Version, best.Version) > 0 {
				best = p.idx
			}
		}
		return best
	}

	todo := append([]string(nil), extra...)
	for name, ps := range all {
		for _, p := range ps {
			if p.suite == "bookworm" && (p.idx.Priority == "required" || p.idx.Priority == "important") {
				todo = append(todo, name)
			}
		}
	}
	seen := map[string]bool{}
	for len(todo) > 0 {
		name := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if seen[name] {
			continue
		}
		p, ok := point(name)
		if !ok {
			if prov := provides[name]; len(prov) > 0 {
				sort.Strings(prov)
				todo = append(todo, prov[0])
			}
			continue
		}
		seen[name] = true
		for _, field := range []string{"Depends", "Pre-Depends"} {
			v := p.Values[field]
			if v == "" {
				continue
			}
			dep, err := dependency.Parse(v)
			if err != nil {
				return fmt.Errorf("%s %s: %w", name, field, err)
			}
			for _, rel := range dep.Relations {
				if len(rel.Possibilities) > 0 {
					todo = append(todo, rel.Possibilities[0].Name)
				}
			}
		}
	}

	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	w := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(w, "# kind\tpackage\tv1 version\tv1 sha256\tv2 package\tv2 version\tv2 sha256 (go run ./bench/delta/debian)")
	for _, n := range names {
		a, _ := point(n)
		b := newest(n)
		fmt.Fprintf(w, "deb\t%s\t%s\t%s\t%s\t%s\t%s\n", n, a.Version, a.SHA256, n, b.Version, b.SHA256)
	}
	// The kernel: the metapackage's dependency in each suite.
	meta := "linux-image-cloud-amd64"
	ka, _ := point(meta)
	kb := newest(meta)
	k1, err := kernelOf(ka, all)
	if err != nil {
		return err
	}
	k2, err := kernelOf(kb, all)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "kernel\t%s\t%s\t%s\t%s\t%s\t%s\n", k1.Package, k1.Version, k1.SHA256, k2.Package, k2.Version, k2.SHA256)
	return w.Flush()
}

func providedNames(p control.BinaryIndex) []string {
	v := p.Values["Provides"]
	if v == "" {
		return nil
	}
	dep, err := dependency.Parse(v)
	if err != nil {
		return nil
	}
	var out []string
	for _, rel := range dep.Relations {
		for _, poss := range rel.Possibilities {
			out = append(out, poss.Name)
		}
	}
	return out
}

// kernelOf returns the linux-image-<abi> package meta depends on, at the
// version it requires.
func kernelOf(meta control.BinaryIndex, all map[string][]pkg) (control.BinaryIndex, error) {
	dep, err := dependency.Parse(meta.Values["Depends"])
	if err != nil {
		return control.BinaryIndex{}, err
	}
	for _, rel := range dep.Relations {
		for _, poss := range rel.Possibilities {
			if !strings.HasPrefix(poss.Name, "linux-image-") || poss.Version == nil {
				continue
			}
			for _, p := range all[poss.Name] {
				if p.idx.Version.String() == poss.Version.Number {
					return p.idx, nil
				}
			}
		}
	}
	return control.BinaryIndex{}, fmt.Errorf("%s %s: no linux-image dependency found in the indexes", meta.Package, meta.Version)
}
