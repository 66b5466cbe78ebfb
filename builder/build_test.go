package builder

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plumb-os/plumb/builder/recipe"
	"github.com/plumb-os/plumb/internal/testutil"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.CleanupBinaries()
	os.Exit(code)
}

// smallRecipe is a recipe that builds offline in seconds: a stand-in kernel
// file (never booted), no modules, a directory source.
const smallRecipe = `name: small
version: 1.0.0
hardware: test
epoch: 1767225600
kernel:
  file: ./vmlinuz
  modules: []
rootfs:
  - dir: ./root
partitions:
  esp: 33MiB
  root: 16MiB
  data: 32MiB
`

// writeTree writes files (path -> content) under dir.
func writeTree(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, c, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func buildIn(t *testing.T, recipeText string, files map[string][]byte, out string) (*Manifest, error) {
	t.Helper()
	dir := t.TempDir()
	files["recipe.yaml"] = []byte(recipeText)
	if _, ok := files["vmlinuz"]; !ok {
		files["vmlinuz"] = []byte("not a real kernel")
	}
	if _, ok := files["root/etc/hostname"]; !ok {
		files["root/etc/hostname"] = []byte("small\n")
	}
	writeTree(t, dir, files)
	r, err := recipe.Load(filepath.Join(dir, "recipe.yaml"))
	if err != nil {
		return nil, err
	}
	plumbd, plumbInit := testutil.Binaries(t)
	return Build(t.Context(), r, Options{OutDir: out, CacheDir: testutil.CacheDir(t), Agent: plumbd, Init: plumbInit})
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func tarWith(t *testing.T, name string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: 1, Typeflag: tar.TypeReg})
	tw.Write([]byte("x"))
	tw.Close()
	return buf.Bytes()
}

// TestBuildBadInput: input that only the build can judge gives one line
// naming the problem, and leaves no output directory behind.
func TestBuildBadInput(t *testing.T) {
	tests := []struct {
		name     string
		recipe   string
		files    map[string][]byte
		want     string
		badInput bool // errors.Is(err, ErrBadInput)
		network  bool
	}{
		{
			name:     "root partition too small for the content",
			recipe:   strings.Replace(smallRecipe, "root: 16MiB", "root: 8MiB", 1),
			files:    map[string][]byte{"root/random.bin": randomBytes(12 << 20)},
			want:     "partitions.root: 8MiB is too small for the root filesystem image",
			badInput: true,
		},
		{
			name:     "tar member escaping the tree",
			recipe:   strings.Replace(smallRecipe, "  - dir: ./root\n", "  - dir: ./root\n  - tar: ./evil.tar\n", 1),
			files:    map[string][]byte{"evil.tar": tarWith(t, "../../etc/evil")},
			want:     "path escapes the tree",
			badInput: true,
		},
		{
			name:     "mount point made a file",
			recipe:   smallRecipe + "files:\n  - path: /data\n    content: \"oops\"\n",
			files:    map[string][]byte{},
			want:     "/data must be a directory",
			badInput: true,
		},
		{
			name:   "unknown kernel module",
			recipe: strings.Replace(smallRecipe, "modules: []", "modules_dir: ./modules/6.1.0-test\n  modules: [no_such_module]", 1),
			files:  map[string][]byte{"modules/6.1.0-test/modules.builtin": nil},
			want:   "no_such_module",
		},
		{
			name:     "modules without a module tree",
			recipe:   strings.Replace(smallRecipe, "modules: []", "modules: [virtio_blk]", 1),
			files:    map[string][]byte{},
			want:     "kernel.modules lists 1 modules, but kernel.file comes without a modules_dir",
			badInput: true,
		},
		{
			name:     "Debian package that does not exist",
			recipe:   strings.Replace(smallRecipe, "  - dir: ./root\n", "  - dir: ./root\n  - deb: [plumb-no-such-package]\n", 1),
			files:    map[string][]byte{},
			want:     `"plumb-no-such-package": not found by apt-get download`,
			badInput: true,
			network:  true,
		},
		{
			name:     "a .deb without a kernel given as the kernel",
			recipe:   strings.Replace(smallRecipe, "  file: ./vmlinuz\n  modules: []\n", "  package: busybox-static\n  modules: []\n", 1),
			files:    map[string][]byte{},
			want:     "expected one boot/vmlinuz-<release>, found 0",
			badInput: true,
			network:  true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.network && testing.Short() {
				t.Skip("needs apt-get download: not in -short")
			}
			out := filepath.Join(t.TempDir(), "out")
			_, err := buildIn(t, tt.recipe, tt.files, out)
			if err == nil {
				t.Fatal("build succeeded, want an error")
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") || !strings.Contains(msg, tt.want) {
				t.Errorf("error = %q, want one line containing %q", msg, tt.want)
			}
			if tt.badInput && !errors.Is(err, ErrBadInput) {
				t.Errorf("error %q is not ErrBadInput (exit code 2)", msg)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("output directory left behind (stat: %v)", err)
			}
		})
	}
}

// TestFailedBuildKeepsOldOutputs: a failed build into a directory holding
// an earlier build changes nothing there.
func TestFailedBuildKeepsOldOutputs(t *testing.T) {
	out := t.TempDir()
	writeTree(t, out, map[string][]byte{ManifestFile: []byte("old manifest"), DiskFile: []byte("old disk"), "notes.txt": []byte("mine")})
	bad := strings.Replace(smallRecipe, "root: 16MiB", "root: 8MiB", 1)
	if _, err := buildIn(t, bad, map[string][]byte{"root/random.bin": randomBytes(12 << 20)}, out); err == nil {
		t.Fatal("build succeeded, want an error")
	}
	entries, _ := os.ReadDir(out)
	if len(entries) != 3 {
		t.Errorf("output dir has %d entries after a failed build, want the 3 old ones", len(entries))
	}
	for name, want := range map[string]string{ManifestFile: "old manifest", DiskFile: "old disk", "notes.txt": "mine"} {
		if got, _ := os.ReadFile(filepath.Join(out, name)); string(got) != want {
			t.Errorf("%s = %q after a failed build, want %q", name, got, want)
		}
	}
}

// TestBuildSmall builds the small recipe and checks that the manifest
// describes the files on disk.
func TestBuildSmall(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	m, err := buildIn(t, smallRecipe, map[string][]byte{}, out)
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "small" || m.Version != "1.0.0" || len(m.Partitions) != 4 || len(m.Artifacts) != len(outputs) {
		t.Fatalf("manifest = %+v", m)
	}
	for _, a := range m.Artifacts {
		d, err := digestFile(filepath.Join(out, a.Name))
		if err != nil || d.SHA256 != a.SHA256 || d.Size != a.Size {
			t.Errorf("%s: file has %+v (err %v), manifest says %+v", a.Name, d, err, a)
		}
	}
	read, err := ReadManifest(filepath.Join(out, ManifestFile))
	if err != nil || read.Kernel != m.Kernel {
		t.Errorf("ReadManifest = %+v, %v", read, err)
	}
	if !strings.Contains(m.Cmdline, "root=PARTUUID="+m.Partitions[1].PartUUID) {
		t.Errorf("cmdline %q does not boot slot A's partition %s", m.Cmdline, m.Partitions[1].PartUUID)
	}
	entries, _ := os.ReadDir(out)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".plumb-build-") {
			t.Errorf("work directory %s left behind", e.Name())
		}
	}
}
