package plumb

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/plumb-os/plumb/builder"
	"github.com/plumb-os/plumb/builder/recipe"
	"github.com/plumb-os/plumb/format/release"
	"github.com/plumb-os/plumb/internal/cli"
	"github.com/plumb-os/plumb/internal/progress"
)

func init() { cli.RegisterBadInput(recipe.ErrInvalid, builder.ErrBadInput) }

type buildOptions struct {
	recipe    string
	out       string
	cache     string
	agent     string
	init      string
	version   string
	repo      string
	rootJSON  string
	joinToken string
	ca        string
	quiet     bool
	jsonOut   bool
	sbKey     string
	sbCert    string
}

func newBuildCmd(e *cli.Env) *cobra.Command {
	var o buildOptions
	cmd := &cobra.Command{
		Use:   "build RECIPE -o DIR",
		Short: "Build a release (rootfs image) and a flashable disk image from a recipe",
		Long: `Build reads a YAML recipe and writes into DIR:
  disk.img       GPT disk image: ESP with systemd-boot, root slots A and B, data
  rootfs.sqfs    the release's root filesystem (what devices pull)
  vmlinuz        the kernel, initrd.img the initramfs
  manifest.json  every artifact with size and sha256, the partition table

Outputs appear only when the whole build succeeded. SOURCE_DATE_EPOCH, when
set, replaces the recipe's epoch; the same recipe and epoch give
byte-identical outputs.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.recipe = args[0]
			return runBuild(cmd.Context(), e, o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.out, "output", "o", "", "output directory (required)")
	f.StringVar(&o.cache, "cache", defaultCache(), "cache directory for downloaded packages (env PLUMB_CACHE)")
	f.StringVar(&o.agent, "plumbd", besideExecutable("plumbd"), "plumbd binary to put into the image")
	f.StringVar(&o.init, "plumb-init", besideExecutable("plumb-init"), "plumb-init binary to put into the initramfs")
	f.StringVar(&o.version, "version", "", "release version (replaces the recipe's; CI stamps releases this way)")
	f.StringVar(&o.repo, "repository", "", "agent.repository: the URL devices pull from (replaces the recipe's)")
	f.StringVar(&o.rootJSON, "root-json", "", "agent.root: the trusted TUF root.json (replaces the recipe's)")
	f.StringVar(&o.ca, "ca", "", "agent.ca: a PEM CA bundle for the repository (replaces the recipe's)")
	f.StringVar(&o.joinToken, "join-token", "", "agent.join_token: file holding the organization's join token (plumb serve writes DIR/join-token)")
	f.BoolVarP(&o.quiet, "quiet", "q", os.Getenv("CI") != "", "print nothing but errors (default in CI)")
	f.BoolVar(&o.jsonOut, "json", false, "print the manifest as JSON")
	f.StringVar(&o.sbKey, "secure-boot-key", "", "sign systemd-boot and the slots' UKIs with this PEM db key (replaces the recipe's boot.secure_boot.key; needs boot.verity)")
	f.StringVar(&o.sbCert, "secure-boot-cert", "", "the PEM certificate of --secure-boot-key")
	cmd.MarkFlagRequired("output")
	return cmd
}

func runBuild(ctx context.Context, e *cli.Env, o buildOptions) error {
	r, err := recipe.Load(o.recipe)
	if err != nil {
		return err
	}
	if o.version != "" {
		if !release.ValidVersion(o.version) {
			return cli.BadInput(fmt.Errorf("--version: expected a version like 1.2.3, got %q", o.version))
		}
		r.Version = o.version
	}
	if (o.sbKey == "") != (o.sbCert == "") {
		return cli.BadInput(fmt.Errorf("--secure-boot-key and --secure-boot-cert: expected both or neither"))
	}
	for _, p := range []string{o.sbKey, o.sbCert} {
		if fi, err := os.Stat(p); p != "" && (err != nil || !fi.Mode().IsRegular()) {
			return cli.BadInput(fmt.Errorf("--secure-boot-key/--secure-boot-cert: expected a PEM file, got %q", p))
		}
	}
	if o.sbKey != "" && !r.Boot.Verity {
		return cli.BadInput(fmt.Errorf("--secure-boot-key: %s: expected boot.verity: true in the recipe (a signed kernel must not mount an unverified root)", o.recipe))
	}
	if err := overrideAgent(r, o); err != nil {
		return err
	}
	var epoch *int64
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < 0 {
			return cli.BadInput(fmt.Errorf("SOURCE_DATE_EPOCH: expected seconds since 1970, got %q", s))
		}
		epoch = &v
	}
	rep := progress.New(e.Stderr, o.quiet || o.jsonOut)
	if !o.quiet && !o.jsonOut {
		fmt.Fprintf(e.Stderr, "building %s %s for %s\n", r.Name, r.Version, r.Hardware)
	}
	m, err := builder.Build(ctx, r, builder.Options{
		OutDir: o.out, CacheDir: o.cache, Agent: o.agent, Init: o.init,
		Epoch: epoch, Log: e.Log, Progress: rep,
		SecureBootKey: o.sbKey, SecureBootCert: o.sbCert,
	})
	if err != nil {
		return err
	}
	if o.jsonOut {
		return cli.PrintJSON(e.Stdout, m)
	}
	if !o.quiet {
		for _, a := range m.Artifacts {
			fmt.Fprintf(e.Stdout, "%-12s %10d  sha256:%s\n", a.Name, a.Size, a.SHA256)
		}
		fmt.Fprintf(e.Stdout, "wrote %s\n", filepath.Join(o.out, builder.ManifestFile))
	}
	return nil
}

// defaultCache is PLUMB_CACHE, else the user's cache directory.
func defaultCache() string {
	if d := os.Getenv("PLUMB_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "plumb")
	}
	return ".cache"
}

// besideExecutable is the path of a sibling binary of the running one
// (make build puts plumb, plumbd and plumb-init into bin/).
func besideExecutable(name string) string {
	exe, err := os.Executable()
	if err != nil {
		return name
	}
	return filepath.Join(filepath.Dir(exe), name)
}

// overrideAgent applies --repository, --root-json and --ca: a repository
// made after the recipe was written (plumb repo init) is named at build
// time.
func overrideAgent(r *recipe.Recipe, o buildOptions) error {
	if o.repo == "" && o.rootJSON == "" && o.ca == "" && o.joinToken == "" {
		return nil
	}
	if r.Agent == nil {
		r.Agent = &recipe.Agent{}
	}
	a := r.Agent
	for _, p := range []*struct {
		dst *string
		v   string
	}{{&a.Repository, o.repo}, {&a.Root, o.rootJSON}, {&a.CA, o.ca}, {&a.JoinToken, o.joinToken}} {
		if p.v != "" {
			*p.dst = p.v
		}
	}
	for _, p := range []string{o.rootJSON, o.ca, o.joinToken} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err != nil {
			return cli.BadInput(err)
		}
	}
	r.SetDefaults()
	if err := r.Validate(); err != nil {
		return err
	}
	return nil
}
