package plumb

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/plumb-os/plumb/builder/tufrepo"
	"github.com/plumb-os/plumb/format/release"
	"github.com/plumb-os/plumb/internal/cli"
	"github.com/plumb-os/plumb/server/rollout"
	"github.com/plumb-os/plumb/server/store"
)

// auditFile is the audit log of rollout actions in the repository
// directory when there is no fleet database (a repository served by
// another server, or not yet by plumb serve): with one, they go to the
// fleet service's audit log, which the page and plumb fleet audit show.
const auditFile = "audit.jsonl"

type rolloutOptions struct {
	repo     string
	hardware string
	group    string
	waves    []string
	actor    string
	reason   string
	jsonOut  bool

	// watch
	threshold float64 // percent
	minSample int
	interval  time.Duration
	db        string
	once      bool
}

func newRolloutCmd(e *cli.Env) *cobra.Command {
	var o rolloutOptions
	cmd := &cobra.Command{
		Use:   "rollout",
		Short: "Stage, pause, resume and watch the rollout of a release",
		Long: `Rollout changes the rollout control of a published release (its waves,
pause and halt; format/release/release.md) and re-signs targets, snapshot
and timestamp with the online keys in DIR/keys (never root). RELEASE is
HARDWARE/VERSION, or VERSION with --hardware (or alone when one hardware
has it). Each change is recorded in the fleet service's audit log (the
database --db, default DIR/fleet.db when plumb serve made it), for every
organization; without a fleet database, in DIR/audit.jsonl. A failed change
leaves the repository as it was.`,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&o.repo, "repo", ".", "repository directory (plumb repo init's DIR)")
	pf.StringVar(&o.hardware, "hardware", "", "hardware of RELEASE when it is given as VERSION")
	pf.StringVar(&o.actor, "actor", "", "who makes the change, for the audit log (default: user@host)")
	pf.BoolVar(&o.jsonOut, "json", false, "print the release's facts as JSON")
	pf.StringVar(&o.db, "db", "", "fleet database: a SQLite file or a postgres:// URL (default DIR/fleet.db)")

	set := &cobra.Command{
		Use:   "set RELEASE --wave P%@WHEN [--wave …] [--group G]",
		Short: "Set the waves of a release for a device group",
		Long: `Set replaces the waves of one device group (--group; none: devices without
a schedule of their own) with the --wave steps: P% of the group's devices
may install the release from WHEN, which is "now", "+DURATION" (like +24h,
+3d) or an RFC 3339 time. Percentages must not fall over time. Each device
decides by itself from the signed waves and its clock.

  plumb rollout set 2.0.0 --wave 10%@now --wave 50%@+24h --wave 100%@+72h --group canary`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRolloutSet(cmd.Context(), e, o, args[0])
		},
	}
	set.Flags().StringArrayVar(&o.waves, "wave", nil, `a step P%@WHEN (repeatable; WHEN: now, +24h, +3d or RFC 3339)`)
	set.Flags().StringVar(&o.group, "group", "", "device group the waves are for (agent config \"group\"); default: devices without their own")

	pause := &cobra.Command{
		Use:   "pause RELEASE",
		Short: "Stop devices from starting a release",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRolloutEdit(cmd.Context(), e, o, args[0], "rollout.pause", rollout.Pause)
		},
	}
	resume := &cobra.Command{
		Use:   "resume RELEASE",
		Short: "Let devices start a paused or halted release again",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRolloutEdit(cmd.Context(), e, o, args[0], "rollout.resume", rollout.Resume)
		},
	}
	haltCmd := &cobra.Command{
		Use:   "halt RELEASE --reason TEXT",
		Short: "Halt a release by hand, with a reason devices show",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(o.reason) == "" {
				return cli.BadInput(fmt.Errorf("--reason: expected why the release is halted, got nothing"))
			}
			return runRolloutEdit(cmd.Context(), e, o, args[0], "rollout.halt", rollout.Halt(o.reason, rolloutActor(o)))
		},
	}
	haltCmd.Flags().StringVar(&o.reason, "reason", "", "why the release is halted (shown by plumbd status)")

	watch := &cobra.Command{
		Use:   "watch",
		Short: "Halt releases whose failure rate passes a threshold",
		Long: `Watch checks every --interval, for each release, how many devices tried it
and how many failed it (rolled back, failed a health check or an attested
commit), from the fleet database (--db, default DIR/fleet.db: the one plumb
serve keeps, a SQLite file or a postgres:// URL). When at least --min-sample devices tried a release and more
than --failure-threshold percent of them failed it, it halts the release
through TUF with the reason, and records the halt in the fleet database's
audit log, for every organization. plumb serve runs the same controller.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runRolloutWatch(cmd.Context(), e, o)
		},
	}
	addWatchFlags(watch, &o)
	watch.Flags().BoolVar(&o.once, "once", false, "check once and exit")

	cmd.AddCommand(set, pause, resume, haltCmd, watch)
	return cmd
}

// addWatchFlags adds the halt policy flags (shared with plumb serve).
func addWatchFlags(cmd *cobra.Command, o *rolloutOptions) {
	f := cmd.Flags()
	f.Float64Var(&o.threshold, "failure-threshold", 100*rollout.DefaultThreshold, "halt a release when more than this percentage of the devices that tried it failed it")
	f.IntVar(&o.minSample, "min-sample", rollout.DefaultMinSample, "devices that must have tried a release before its failure rate counts")
	f.DurationVar(&o.interval, "watch-interval", time.Minute, "time between two checks of the failure rates")
}

func rolloutActor(o rolloutOptions) string {
	if o.actor != "" {
		return o.actor
	}
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return name + "@" + host + " (plumb rollout)"
}

func runRolloutSet(ctx context.Context, e *cli.Env, o rolloutOptions, spec string) error {
	if len(o.waves) == 0 {
		return cli.BadInput(fmt.Errorf("--wave: expected at least one step like 10%%@now"))
	}
	if o.group != "" && !validGroup(o.group) {
		return cli.BadInput(fmt.Errorf("--group: expected a group name like \"canary\" (a-z 0-9 . _ -), got %q", o.group))
	}
	steps := make([]rollout.Step, 0, len(o.waves))
	for _, s := range o.waves {
		w, err := parseWave(s)
		if err != nil {
			return cli.BadInput(err)
		}
		steps = append(steps, rollout.Step{Percent: w.percent, At: w.abs, After: w.rel})
	}
	return runRolloutEdit(ctx, e, o, spec, "rollout.set", rollout.SetWaves(o.group, steps))
}

func runRolloutEdit(ctx context.Context, e *cli.Env, o rolloutOptions, spec, action string, edit tufrepo.RolloutEdit) error {
	if _, err := openRepo(e, o.repo); err != nil {
		return err
	}
	audit, done, err := rolloutAudit(ctx, o)
	if err != nil {
		return err
	}
	defer done()
	hw, version, f, err := rollout.Apply(ctx, rollout.Change{Dir: o.repo, RepoOptions: tufrepo.Options{Log: e.Log},
		Release: spec, Hardware: o.hardware, Action: action, Group: o.group, Actor: rolloutActor(o), Edit: edit, Audit: audit})
	if err != nil {
		return err
	}
	if o.jsonOut {
		return cli.PrintJSON(e.Stdout, f)
	}
	printControl(e, hw, version, f)
	return nil
}

// rolloutAudit is where rollout changes are recorded: the fleet
// database's audit log (--db, or DIR/fleet.db when it exists), for every
// organization; DIR/audit.jsonl when there is no fleet database.
func rolloutAudit(ctx context.Context, o rolloutOptions) (rollout.Auditor, func(), error) {
	dsn := o.db
	if dsn == "" {
		dsn = filepath.Join(o.repo, "fleet.db")
		if _, err := os.Stat(dsn); err != nil {
			return &rollout.FileAudit{Path: filepath.Join(o.repo, auditFile)}, func() {}, nil
		}
	}
	st, err := store.Open(ctx, dsn, store.Options{})
	if err != nil {
		return nil, nil, err
	}
	return rollout.StoreAudit{DB: st}, func() { st.Close() }, nil
}

func printControl(e *cli.Env, hw, version string, f *release.Facts) {
	state := "rolling out"
	switch {
	case f.Halted != nil:
		state = fmt.Sprintf("halted at %s by %s: %s", f.Halted.At.Format(time.RFC3339), f.Halted.By, f.Halted.Reason)
	case f.Paused:
		state = "paused"
	}
	fmt.Fprintf(e.Stdout, "%s/%s: %s (devices without waves support: %d%%)\n", hw, version, state, f.Rollout)
	for _, w := range f.Waves {
		g := w.Group
		if g == "" {
			g = "(default)"
		}
		fmt.Fprintf(e.Stdout, "  group %-12s %3d%% from %s\n", g, w.Percent, w.At.Format(time.RFC3339))
	}
}

func runRolloutWatch(ctx context.Context, e *cli.Env, o rolloutOptions) error {
	if _, err := watchPolicy(o); err != nil {
		return err
	}
	dsn := o.db
	if dsn == "" {
		dsn = filepath.Join(o.repo, "fleet.db")
		if _, err := os.Stat(dsn); err != nil {
			return cli.BadInput(fmt.Errorf("--db: no fleet database at %s (plumb serve makes it); expected --db FILE or postgres://…", dsn))
		}
	}
	st, err := store.Open(ctx, dsn, store.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	w, err := newWatcher(e, o, st)
	if err != nil {
		return err
	}
	if o.once {
		halts, err := w.Check(ctx)
		for _, h := range halts {
			fmt.Fprintf(e.Stdout, "halted %s/%s: %s\n", h.Hardware, h.Version, h.Reason)
		}
		return err
	}
	return w.Run(ctx, o.interval)
}

// newWatcher makes the halt controller of the repository o.repo, reading
// the per-release outcomes of the fleet store.
func newWatcher(e *cli.Env, o rolloutOptions, outcomes rollout.Outcomes) (*rollout.Watcher, error) {
	p, err := watchPolicy(o)
	if err != nil {
		return nil, err
	}
	if _, err := openRepo(e, o.repo); err != nil {
		return nil, err
	}
	actor := o.actor
	if actor == "" {
		actor = fmt.Sprintf("plumb rollout watch (failure threshold %g%%, min sample %d)", o.threshold, o.minSample)
	}
	var audit rollout.Auditor = &rollout.FileAudit{Path: filepath.Join(o.repo, auditFile)}
	if st, ok := outcomes.(*store.Store); ok {
		audit = rollout.StoreAudit{DB: st} // the halt concerns every organization
	}
	return &rollout.Watcher{
		Dir: o.repo, RepoOptions: tufrepo.Options{Log: e.Log},
		Outcomes: outcomes, Policy: p, Actor: actor, Audit: audit, Log: e.Log,
	}, nil
}

// watchPolicy checks the halt controller's flags (before anything is
// opened, so a bad flag is reported as such).
func watchPolicy(o rolloutOptions) (rollout.Policy, error) {
	p := rollout.Policy{Threshold: o.threshold / 100, MinSample: o.minSample}
	if err := p.Validate(); err != nil {
		return p, cli.BadInput(fmt.Errorf("--failure-threshold/--min-sample: %w", err))
	}
	if o.interval <= 0 {
		return p, cli.BadInput(fmt.Errorf("--watch-interval: expected a positive duration, got %s", o.interval))
	}
	return p, nil
}

// waveSpec is a parsed --wave: a percentage from a time relative to the
// command's clock.
type waveSpec struct {
	percent int
	abs     time.Time     // absolute, or
	rel     time.Duration // after now
}

// parseWave parses P%@WHEN (WHEN: now, +DURATION, RFC 3339; "P%" alone
// means now), as rollout.ParseStep does for the page too.
func parseWave(s string) (waveSpec, error) {
	st, err := rollout.ParseStep(s)
	if err != nil {
		return waveSpec{}, fmt.Errorf("--%w", err)
	}
	return waveSpec{percent: st.Percent, abs: st.At, rel: st.After}, nil
}

func validGroup(g string) bool {
	if len(g) == 0 || len(g) > 63 {
		return false
	}
	for i, r := range g {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
		case i > 0 && (r == '_' || r == '.' || r == '-'):
		default:
			return false
		}
	}
	return true
}

// startServeWatcher starts plumb serve's halt controller in the
// background, until ctx ends; the returned func waits for it to end. It runs
// when --rollout-watch is on, the fleet service is on (its store gives the outcomes)
// and DIR is a repository (a served copy without keys halts nothing: each
// halt attempt logs why).
func startServeWatcher(ctx context.Context, e *cli.Env, o serveOptions, outcomes rollout.Outcomes, log *slog.Logger) (wait func(), err error) {
	none := func() {}
	if !o.watch || outcomes == nil {
		return none, nil
	}
	if _, err := tufrepo.Open(o.dir, tufrepo.Options{}); err != nil {
		log.Warn("rollout watch off: no repository", "dir", o.dir, "err", err)
		return none, nil
	}
	po := o.policy
	po.repo = o.dir
	we := *e
	we.Log = log
	w, err := newWatcher(&we, po, outcomes)
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx, po.interval)
	}()
	log.Info("rollout watch on", "failure_threshold_percent", po.threshold, "min_sample", po.minSample, "interval", po.interval)
	return func() { <-done }, nil
}
