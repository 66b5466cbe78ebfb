package deps

import (
	"bufio"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/plumb-os/plumb/internal/testutil"
)

// use is where a tool is run from, and which package list must install it.
type use struct {
	where string // file (and line)
	list  string // "DEB_PKGS", or "BENCH_PKGS" / "CLEANROOT_PKGS" for what only make bench / make cleanroot run
	pkg   string // the package the code names for it (RequireTool's hint), or ""
	exact bool   // found in Go code (a literal), not guessed from a shell line
}

// prerequisites are what the README asks for before make: a Debian 12
// minbase root plus these (and Go in /usr/local/go).
var prerequisites = []string{"git", "make", "ca-certificates"}

// TestMakeDepsInstallsEveryTool finds the host tools the repository runs:
//   - in Go files: exec.Command / CommandContext / LookPath with a literal
//     name, every function that hands one of its parameters to
//     exec.LookPath (testutil.RequireTool and the packages' own helpers),
//     `for tool := range map[string]string{...}` look-ups, test tables
//     with tool (and pkg) fields, testvm's tool table, and the commands of
//     literal `sh -c` scripts;
//   - the commands of the Makefile's recipes and of scripts/ and bench/.
//
// Each tool found in PATH is mapped to its Debian package with dpkg -S,
// which must be in the Makefile's DEB_PKGS (BENCH_PKGS or CLEANROOT_PKGS
// for tools only make bench or make cleanroot run), a package every Debian
// 12 minbase has (Essential or Priority required), or a README
// prerequisite. A package named by the code (RequireTool's hint) must be
// the one dpkg names. A Go-literal tool missing from PATH fails the test.
func TestMakeDepsInstallsEveryTool(t *testing.T) {
	dpkg := testutil.RequireTool(t, "dpkg", "dpkg")
	root := testutil.RepoRoot(t)
	lists, makeVars := makefileLists(t, filepath.Join(root, "Makefile"))
	for _, name := range []string{"DEB_PKGS", "BENCH_PKGS", "CLEANROOT_PKGS"} {
		if len(lists[name]) == 0 {
			t.Fatalf("Makefile: no %s list", name)
		}
	}

	uses := map[string][]use{}
	add := func(tool string, u use) {
		if tool == "" || strings.ContainsAny(tool, "$\"'`{}[]=<>*?\\") || strings.HasPrefix(tool, "-") {
			return
		}
		uses[tool] = append(uses[tool], u)
	}
	goTools(t, root, add)
	makeTools(t, filepath.Join(root, "Makefile"), makeVars, add)
	for _, dir := range []string{"scripts", "bench"} {
		files, _ := filepath.Glob(filepath.Join(root, dir, "*.sh"))
		more, _ := filepath.Glob(filepath.Join(root, dir, "*", "*.sh"))
		for _, f := range append(files, more...) {
			list := "DEB_PKGS"
			rel, _ := filepath.Rel(root, f)
			switch {
			case strings.HasPrefix(rel, "bench/"):
				list = "BENCH_PKGS"
			case rel == "scripts/cleanroot.sh":
				list = "CLEANROOT_PKGS"
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range shellCommands(string(b)) {
				add(c.word, use{where: rel + ":" + strconv.Itoa(c.line), list: list})
			}
		}
	}
	if len(uses) < 20 {
		t.Fatalf("found only %d tools: the scan is broken", len(uses))
	}

	base := map[string]bool{}
	for _, p := range prerequisites {
		base[p] = true
	}
	builtins := shellBuiltins(t)
	var tools []string
	for tool := range uses {
		tools = append(tools, tool)
	}
	sort.Strings(tools)
	paths := map[string]string{}
	notCommands, notInstalled := 0, 0
	for _, tool := range tools {
		us := uses[tool]
		exact := false
		for _, u := range us {
			exact = exact || u.exact
		}
		path, err := exec.LookPath(tool)
		switch {
		case err != nil && exact && !anyIn(us, "DEB_PKGS"):
			// Only make bench (or make cleanroot) runs it, and make test
			// does not install BENCH_PKGS: look for it in the list's
			// packages themselves.
			list := "BENCH_PKGS"
			if allIn(us, "CLEANROOT_PKGS") {
				list = "CLEANROOT_PKGS"
			}
			if pkg := packageWithTool(t, tool, lists[list]); pkg == "" {
				t.Errorf("%s (run by %s) is not installed, and no package of the Makefile's %s has it: add its package to %s", tool, us[0].where, list, list)
			}
			notInstalled++
		case err != nil && exact:
			t.Errorf("%s (run by %s) is not installed: add its package to DEB_PKGS and run make deps", tool, us[0].where)
		case err != nil || builtins[tool] && !exact:
			notCommands++ // a shell builtin or a word the rough reader took for a command
		default:
			paths[tool] = path
		}
	}
	owner := owners(t, dpkg, paths)
	pkgs := installed(t)
	closure := map[string]map[string]bool{}
	provides := func(listed, pkg string) bool { // apt installs listed and all it depends on
		c, ok := closure[listed]
		if !ok {
			c = map[string]bool{}
			queue := []string{listed}
			for len(queue) > 0 {
				n := queue[0]
				queue = queue[1:]
				if c[n] {
					continue
				}
				c[n] = true
				for d := range pkgs[n].depends {
					queue = append(queue, d)
				}
			}
			closure[listed] = c
		}
		return c[pkg]
	}
	inList := func(list, pkg string) bool {
		for listed := range lists[list] {
			if provides(listed, pkg) {
				return true
			}
		}
		return false
	}
	checked := 0
	for _, tool := range tools {
		path, ok := paths[tool]
		if !ok {
			continue
		}
		us := uses[tool]
		pkg := owner[tool]
		if pkg == "" {
			if strings.HasPrefix(path, "/usr/local/go/") {
				continue // Go, a prerequisite
			}
			t.Errorf("%s (%s, run by %s): no Debian package owns it", tool, path, us[0].where)
			continue
		}
		checked++
		for _, u := range us {
			if u.pkg != "" && !provides(u.pkg, pkg) {
				t.Errorf("%s: %s names package %s, but %s is in %s", tool, u.where, u.pkg, path, pkg)
			}
		}
		if base[pkg] || pkgs[pkg].minbase {
			continue
		}
		need := "BENCH_PKGS"
		for _, u := range us {
			if u.list == "DEB_PKGS" {
				need = "DEB_PKGS"
			}
		}
		if need == "BENCH_PKGS" && allIn(us, "CLEANROOT_PKGS") {
			need = "CLEANROOT_PKGS"
		}
		if !inList("DEB_PKGS", pkg) && (need == "DEB_PKGS" || !inList(need, pkg)) {
			t.Errorf("%s (package %s) is run by %s but %s does not install it: add %s to the Makefile's %s", tool, pkg, us[0].where, map[string]string{"DEB_PKGS": "make deps", "BENCH_PKGS": "make deps-bench", "CLEANROOT_PKGS": "make cleanroot"}[need], pkg, need)
		}
	}
	// cgo (make build: CGO_ENABLED=1) compiles C: gcc and the C library's
	// headers, which apt leaves out of gcc with --no-install-recommends.
	if mk, _ := os.ReadFile(filepath.Join(root, "Makefile")); strings.Contains(string(mk), "CGO_ENABLED=1") {
		hdr := owners(t, dpkg, map[string]string{"stdint.h": "/usr/include/stdint.h"})["stdint.h"]
		if hdr == "" {
			t.Errorf("cgo: no Debian package owns /usr/include/stdint.h (libc6-dev not installed?)")
		} else if !inList("DEB_PKGS", hdr) {
			t.Errorf("cgo needs /usr/include/stdint.h (package %s) but make deps does not install it: add %s to the Makefile's DEB_PKGS", hdr, hdr)
		}
	}
	t.Logf("%d words the shell reader took for commands are not in PATH or are builtins", notCommands)
	t.Logf("%d tools checked against the Makefile's package lists (%d of them, not installed, in the packages' file lists)", checked+notInstalled, notInstalled)
	if checked < 20 {
		t.Errorf("only %d tools mapped to packages: the scan or dpkg -S is broken", checked)
	}
}

func anyIn(us []use, list string) bool {
	for _, u := range us {
		if u.list == list {
			return true
		}
	}
	return false
}

func allIn(us []use, list string) bool {
	for _, u := range us {
		if u.list != list {
			return false
		}
	}
	return true
}

// makefileLists reads the Makefile's variables (NAME := value, with
// continuation lines): the package lists as sets, and every value.
func makefileLists(t *testing.T, path string) (map[string]map[string]bool, map[string]string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(b), "\\\n", " ")
	vars := map[string]string{}
	assign := regexp.MustCompile(`^(?:export\s+)?([A-Z_]+)\s*(?::=|\?=|=)\s*(.*)$`)
	for _, line := range strings.Split(text, "\n") {
		if m := assign.FindStringSubmatch(line); m != nil {
			vars[m[1]] = m[2]
		}
	}
	lists := map[string]map[string]bool{}
	for name, v := range vars {
		if strings.HasSuffix(name, "_PKGS") {
			lists[name] = map[string]bool{}
			for _, p := range strings.Fields(v) {
				lists[name][p] = true
			}
		}
	}
	return lists, vars
}

// makeTools adds the commands of the Makefile's recipes, with make
// variables expanded. A target's list is BENCH_PKGS for bench, else
// DEB_PKGS.
func makeTools(t *testing.T, path string, vars map[string]string, add func(string, use)) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	varRef := regexp.MustCompile(`\$\(([A-Z_]+)\)`)
	expand := func(s string) string {
		for range 5 {
			s = varRef.ReplaceAllStringFunc(s, func(m string) string {
				name := varRef.FindStringSubmatch(m)[1]
				switch name {
				case "MAKE":
					return "make"
				case "CURDIR":
					return "."
				}
				if v, ok := vars[name]; ok {
					return v
				}
				return m
			})
		}
		return strings.ReplaceAll(s, "$$", "$")
	}
	target := ""
	lines := strings.Split(strings.ReplaceAll(string(b), "\\\n", " "), "\n")
	var recipe strings.Builder
	flush := func(line int) {
		list := "DEB_PKGS"
		switch target {
		case "bench", "deps-bench":
			list = "BENCH_PKGS"
		case "cleanroot":
			list = "CLEANROOT_PKGS"
		}
		for _, c := range shellCommands(expand(recipe.String())) {
			add(c.word, use{where: "Makefile target " + target, list: list})
		}
		recipe.Reset()
	}
	targetRE := regexp.MustCompile(`^([a-z][a-z-]*):`)
	for i, line := range lines {
		if strings.HasPrefix(line, "\t") {
			recipe.WriteString(strings.TrimLeft(strings.TrimPrefix(line, "\t"), "@-") + "\n")
			continue
		}
		if m := targetRE.FindStringSubmatch(line); m != nil {
			flush(i)
			target = m[1]
		}
	}
	flush(len(lines))
}

// goTools scans the repository's Go files for tool names.
func goTools(t *testing.T, root string, add func(string, use)) {
	t.Helper()
	fset := token.NewFileSet()
	var files []*ast.File
	var names []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || d.Name() == "out" || strings.HasPrefix(d.Name(), ".")) && p != root {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".go") {
			f, err := parser.ParseFile(fset, p, nil, 0)
			if err != nil {
				return err
			}
			files = append(files, f)
			rel, _ := filepath.Rel(root, p)
			names = append(names, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Look-up functions: name -> index of the parameter that is a tool
	// name (handed to exec.LookPath or to another look-up function), and
	// of a "pkg" parameter (-1 when none).
	type lookup struct{ tool, pkg int }
	lookups := map[string]lookup{"LookPath": {0, -1}}
	// key names a look-up function: exported ones by name (called from
	// other packages), unexported ones by their directory too, so that two
	// packages' unexported helpers of the same name (run, tool) are not
	// taken for each other.
	key := func(file, name string) string {
		if name != "" && name[0] >= 'a' && name[0] <= 'z' {
			return filepath.Dir(file) + ":" + name
		}
		return name
	}
	for changed := true; changed; {
		changed = false
		for fi, f := range files {
			for _, decl := range f.Decls {
				fd, ok := decl.(*ast.FuncDecl)
				if !ok || fd.Body == nil {
					continue
				}
				if _, done := lookups[key(names[fi], fd.Name.Name)]; done {
					continue
				}
				var params []string
				for _, field := range fd.Type.Params.List {
					for _, n := range field.Names {
						params = append(params, n.Name)
					}
				}
				ast.Inspect(fd.Body, func(n ast.Node) bool {
					call, ok := n.(*ast.CallExpr)
					if !ok {
						return true
					}
					l, ok := lookups[key(names[fi], calleeName(call))]
					if !ok || l.tool >= len(call.Args) {
						return true
					}
					id, ok := call.Args[l.tool].(*ast.Ident)
					if !ok {
						return true
					}
					for i, p := range params {
						if p == id.Name {
							pkg := -1
							for j, q := range params {
								if q == "pkg" {
									pkg = j
								}
							}
							lookups[key(names[fi], fd.Name.Name)] = lookup{i, pkg}
							changed = true
						}
					}
					return true
				})
			}
		}
	}

	for i, f := range files {
		list := "DEB_PKGS"
		if strings.HasPrefix(names[i], "bench/") || strings.HasSuffix(names[i], "bench_test.go") {
			list = "BENCH_PKGS"
		}
		ast.Inspect(f, func(n ast.Node) bool {
			where := func(n ast.Node) string { return names[i] + ":" + strconv.Itoa(fset.Position(n.Pos()).Line) }
			switch n := n.(type) {
			case *ast.CallExpr:
				name := calleeName(n)
				switch {
				case name == "Command" || name == "CommandContext":
					k := 0
					if name == "CommandContext" {
						k = 1
					}
					if k >= len(n.Args) {
						return true
					}
					tool, ok := stringLit(n.Args[k])
					if !ok {
						return true
					}
					name := filepath.Base(tool)
					if filepath.IsAbs(tool) {
						name = tool // outside PATH (/usr/lib/apt/apt-helper): looked up as it is
					}
					add(name, use{where: where(n), list: list, exact: true})
					if (tool == "sh" || tool == "bash") && len(n.Args) > k+2 {
						if flag, _ := stringLit(n.Args[k+1]); flag == "-c" {
							if script, ok := stringLit(n.Args[k+2]); ok {
								for _, c := range shellCommands(script) {
									add(c.word, use{where: where(n), list: list})
								}
							}
						}
					}
				default:
					l, ok := lookups[key(names[i], name)]
					if !ok || l.tool >= len(n.Args) {
						return true
					}
					tool, ok := stringLit(n.Args[l.tool])
					if !ok {
						return true
					}
					pkg := ""
					if l.pkg >= 0 && l.pkg < len(n.Args) {
						pkg, _ = stringLit(n.Args[l.pkg])
					}
					add(tool, use{where: where(n), list: list, pkg: pkg, exact: true})
				}
			case *ast.RangeStmt:
				// for tool, pkg := range map[string]string{"sgdisk": "gdisk", ...}
				// followed by exec.LookPath(tool)
				lit, ok := n.X.(*ast.CompositeLit)
				key, kok := n.Key.(*ast.Ident)
				if !ok || !kok || !usesLookPath(n.Body, key.Name) {
					return true
				}
				for _, e := range lit.Elts {
					kv, ok := e.(*ast.KeyValueExpr)
					if !ok {
						continue
					}
					tool, ok1 := stringLit(kv.Key)
					pkg, _ := stringLit(kv.Value)
					if ok1 {
						add(tool, use{where: where(kv), list: list, pkg: pkg, exact: true})
					}
				}
			case *ast.CompositeLit:
				// test tables: []struct{ name, tool, pkg string }{{"bzip2", "bzip2", "bzip2"}, ...}
				if at, ok := n.Type.(*ast.ArrayType); ok {
					if st, ok := at.Elt.(*ast.StructType); ok {
						toolIdx, pkgIdx, k := -1, -1, 0
						for _, field := range st.Fields.List {
							for _, fn := range field.Names {
								switch fn.Name {
								case "tool":
									toolIdx = k
								case "pkg":
									pkgIdx = k
								}
								k++
							}
						}
						for _, e := range n.Elts {
							row, ok := e.(*ast.CompositeLit)
							if !ok || toolIdx < 0 || toolIdx >= len(row.Elts) {
								continue
							}
							tool, ok := stringLit(row.Elts[toolIdx])
							if !ok || tool == "" {
								continue
							}
							pkg := ""
							if pkgIdx >= 0 && pkgIdx < len(row.Elts) {
								pkg, _ = stringLit(row.Elts[pkgIdx])
							}
							add(tool, use{where: where(row), list: list, pkg: pkg, exact: true})
						}
					}
				}
				// testvm's tool table: tool{name: "qemu-system-x86_64", ...}
				if id, ok := n.Type.(*ast.Ident); ok && id.Name == "tool" && !strings.HasSuffix(names[i], "_test.go") {
					for _, e := range n.Elts {
						kv, ok := e.(*ast.KeyValueExpr)
						if !ok {
							continue
						}
						if k, ok := kv.Key.(*ast.Ident); ok && k.Name == "name" {
							if tool, ok := stringLit(kv.Value); ok {
								add(tool, use{where: where(kv), list: list, exact: true})
							}
						}
					}
				}
			}
			return true
		})
	}
}

func usesLookPath(body ast.Node, name string) bool {
	found := false
	ast.Inspect(body, func(n ast.Node) bool {
		if call, ok := n.(*ast.CallExpr); ok && calleeName(call) == "LookPath" && len(call.Args) == 1 {
			if id, ok := call.Args[0].(*ast.Ident); ok && id.Name == name {
				found = true
			}
		}
		return !found
	})
	return found
}

func calleeName(call *ast.CallExpr) string {
	switch f := call.Fun.(type) {
	case *ast.Ident:
		return f.Name
	case *ast.SelectorExpr:
		return f.Sel.Name
	}
	return ""
}

// stringLit is a string literal's value, or a constant path (the
// testvm busybox constant is resolved by its literal elsewhere).
func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

var shellFunc = regexp.MustCompile(`(?m)^\s*([A-Za-z_][A-Za-z0-9_-]*)\s*\(\)`)

type command struct {
	word string
	line int
}

// shellCommands is a rough shell reader: the first word of every simple
// command (after assignments and wrappers such as env, exec, nice -n N,
// timeout N, command -v), across ; & | ( ) $( ` and keywords. Quoted
// words and variables are never commands. Good enough for the
// repository's scripts; what it takes for a command but is not one is
// not in PATH and is left out.
func shellCommands(script string) (out []command) {
	funcs := map[string]bool{} // the script's own functions are not tools
	for _, m := range shellFunc.FindAllStringSubmatch(script, -1) {
		funcs[m[1]] = true
	}
	defer func() {
		kept := out[:0]
		for _, c := range out {
			if !funcs[c.word] {
				kept = append(kept, c)
			}
		}
		out = kept
	}()
	line := 1
	sc := bufio.NewScanner(strings.NewReader(script))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	wrappers := map[string]int{"env": 0, "exec": 0, "nice": 0, "timeout": 1, "command": 0, "sudo": 0, "then": 0, "do": 0, "else": 0, "elif": 0, "if": 0, "while": 0, "until": 0, "!": 0, "time": 0, "xargs": 0}
	for sc.Scan() {
		text := sc.Text()
		if i := strings.Index(text, "#"); i >= 0 && (i == 0 || text[i-1] == ' ' || text[i-1] == '\t') {
			text = text[:i]
		}
		// Split into words and separators, respecting quotes.
		var words []string
		var cur strings.Builder
		quote := byte(0)
		flushWord := func() {
			if cur.Len() > 0 {
				words = append(words, cur.String())
				cur.Reset()
			}
		}
		for i := 0; i < len(text); i++ {
			c := text[i]
			switch {
			case quote == '\'':
				cur.WriteByte(c)
				if c == '\'' {
					quote = 0
				}
			case c == '$' && i+1 < len(text) && text[i+1] == '(':
				flushWord()
				words = append(words, ";")
				i++
			case quote == '"':
				cur.WriteByte(c)
				if c == '"' {
					quote = 0
				}
			case c == '\'' || c == '"':
				quote = c
				cur.WriteByte(c)
			case strings.IndexByte(";&|()`{}", c) >= 0:
				flushWord()
				words = append(words, ";")
			case c == ' ' || c == '\t':
				flushWord()
			default:
				cur.WriteByte(c)
			}
		}
		flushWord()
		atCmd := true
		skip := 0
		for _, w := range words {
			if w == ";" {
				atCmd, skip = true, 0
				continue
			}
			if !atCmd {
				continue
			}
			if skip > 0 {
				skip--
				continue
			}
			if strings.Contains(w, "=") && !strings.HasPrefix(w, "=") || strings.HasPrefix(w, "-") {
				continue // an assignment, or a wrapper's flag (nice -n 10: the 10 follows)
			}
			if n, ok := wrappers[w]; ok {
				skip = n
				if w == "nice" {
					skip = 0
				}
				continue
			}
			if _, err := strconv.Atoi(w); err == nil {
				continue // nice -n N
			}
			out = append(out, command{word: w, line: line})
			atCmd = false
		}
		line++
	}
	return out
}

// shellBuiltins are bash's builtins and keywords.
func shellBuiltins(t *testing.T) map[string]bool {
	t.Helper()
	out, err := exec.Command("bash", "-c", "compgen -b; compgen -k").Output()
	if err != nil {
		t.Fatalf("bash compgen: %v", err)
	}
	m := map[string]bool{}
	for _, w := range strings.Fields(string(out)) {
		m[w] = true
	}
	return m
}

// owners maps each tool to the Debian package that installed its path, in
// one dpkg -S call (merged /usr: dpkg may know it as /bin/x or /usr/bin/x;
// alternatives are followed to the real file).
func owners(t *testing.T, dpkg string, paths map[string]string) map[string]string {
	t.Helper()
	cands := map[string][]string{} // tool -> paths to ask about, best first
	var all []string
	for tool, path := range paths {
		c := []string{path}
		if real, err := filepath.EvalSymlinks(path); err == nil && real != path {
			c = append(c, real)
		}
		for _, p := range append([]string(nil), c...) {
			switch {
			case strings.HasPrefix(p, "/usr/"):
				c = append(c, strings.TrimPrefix(p, "/usr"))
			case strings.HasPrefix(p, "/bin/") || strings.HasPrefix(p, "/sbin/"):
				c = append(c, "/usr"+p)
			}
		}
		cands[tool] = c
		all = append(all, c...)
	}
	out, _ := exec.Command(dpkg, append([]string{"-S"}, all...)...).Output() // exits 1 when some path is unowned
	byPath := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		// "pkg[:arch][, pkg2]: /path"; "diversion by ..." lines are skipped
		i := strings.LastIndex(line, ": ")
		if i < 0 || strings.HasPrefix(line, "diversion") {
			continue
		}
		pkg := strings.SplitN(strings.Split(line[:i], ", ")[0], ":", 2)[0]
		byPath[line[i+2:]] = pkg
	}
	m := map[string]string{}
	for tool, c := range cands {
		for _, p := range c {
			if pkg, ok := byPath[p]; ok {
				m[tool] = pkg
				break
			}
		}
	}
	return m
}

// pkgInfo is what dpkg knows of an installed package.
type pkgInfo struct {
	minbase bool            // Essential, or Priority required: in every Debian minbase root
	depends map[string]bool // its Depends and Pre-Depends (every alternative)
}

// installed reads every installed package in one dpkg-query call.
func installed(t *testing.T) map[string]pkgInfo {
	t.Helper()
	out, err := exec.Command("dpkg-query", "-W", "-f", "${Package}\t${Essential}\t${Priority}\t${Depends}, ${Pre-Depends}\n").Output()
	if err != nil {
		t.Fatalf("dpkg-query: %v", err)
	}
	m := map[string]pkgInfo{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 4 {
			continue
		}
		info := pkgInfo{minbase: f[1] == "yes" || f[2] == "required", depends: map[string]bool{}}
		for _, alt := range strings.FieldsFunc(f[3], func(r rune) bool { return r == ',' || r == '|' }) {
			if w := strings.Fields(alt); len(w) > 0 {
				info.depends[strings.SplitN(w[0], ":", 2)[0]] = true
			}
		}
		m[f[0]] = info
	}
	return m
}

// packageWithTool returns the package of pkgs whose file list has the
// command tool in /usr/bin, /usr/sbin, /bin or /sbin, or "". The packages
// are fetched with apt-get download (not installed) and listed with
// dpkg-deb -c: this is how a tool that only make bench installs is checked
// on a machine that ran only make deps.
func packageWithTool(t *testing.T, tool string, pkgs map[string]bool) string {
	t.Helper()
	var names []string
	for p := range pkgs {
		names = append(names, p)
	}
	sort.Strings(names)
	dir := t.TempDir()
	for _, p := range names {
		debs, _ := filepath.Glob(filepath.Join(dir, p+"_*.deb"))
		if len(debs) == 0 {
			cmd := exec.Command("apt-get", "download", "-q", p)
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("apt-get download %s (to read its file list): %v\n%s", p, err, out)
			}
			if debs, _ = filepath.Glob(filepath.Join(dir, p+"_*.deb")); len(debs) != 1 {
				t.Fatalf("apt-get download %s: %d .deb files in %s", p, len(debs), dir)
			}
		}
		out, err := exec.Command("dpkg-deb", "-c", debs[0]).Output()
		if err != nil {
			t.Fatalf("dpkg-deb -c %s: %v", debs[0], err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) < 6 {
				continue
			}
			switch strings.TrimPrefix(f[5], ".") {
			case "/usr/bin/" + tool, "/usr/sbin/" + tool, "/bin/" + tool, "/sbin/" + tool:
				return p
			}
		}
	}
	return ""
}
