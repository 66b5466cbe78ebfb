package plumb

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/plumb-os/plumb/internal/cli"
	"github.com/plumb-os/plumb/server"
	"github.com/plumb-os/plumb/server/store"
)

// plumb fleet: set-up commands work on the fleet database directly (the
// server's owner bootstraps organizations, users and tokens); listing
// commands use the operator API with an API token, as scripts do.

type fleetDBOptions struct {
	dir, db string
}

func (o *fleetDBOptions) flags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.dir, "dir", "", "the plumb serve directory (its database is DIR/fleet.db)")
	cmd.Flags().StringVar(&o.db, "db", "", "the fleet database: a SQLite file or a postgres:// URL (instead of --dir)")
}

// openOrg checks a name (what says which flag or argument it came from)
// and a role given on the command line, then opens the database and finds
// the organization org in it. The caller closes the store.
func (o *fleetDBOptions) openOrg(ctx context.Context, what, name, role, org string) (*store.Store, *store.Org, error) {
	if !validName(name) {
		return nil, nil, cli.BadInput(fmt.Errorf("%s %q: expected 1-63 of a-z 0-9 . _ -", what, name))
	}
	if store.RoleRank(role) == 0 {
		return nil, nil, cli.BadInput(fmt.Errorf("--role %q: expected viewer, operator or admin", role))
	}
	db, err := o.open(ctx)
	if err != nil {
		return nil, nil, err
	}
	or, err := db.OrgByName(ctx, org)
	if err != nil {
		db.Close()
		return nil, nil, cli.BadInput(err)
	}
	return db, or, nil
}

func (o *fleetDBOptions) open(ctx context.Context) (*store.Store, error) {
	dsn := o.db
	switch {
	case dsn != "" && o.dir != "":
		return nil, cli.BadInput(errors.New("--dir, --db: expected one of them, got both"))
	case dsn == "" && o.dir == "":
		return nil, cli.BadInput(errors.New("--dir or --db: expected the serve directory or the database, got neither"))
	case dsn == "":
		if _, err := os.Stat(filepath.Join(o.dir, "repository")); err != nil {
			return nil, cli.BadInput(fmt.Errorf("--dir %s: expected a plumb serve directory (with repository/ inside)", o.dir))
		}
		dsn = filepath.Join(o.dir, "fleet.db")
	}
	return store.Open(ctx, dsn, store.Options{})
}

// cliActor names the local user for the audit log.
func cliActor() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return "cli " + name
}

func newFleetCmd(e *cli.Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fleet",
		Short: "Manage the fleet service: organizations, operators, tokens; list devices, groups, releases",
		Long: `Fleet manages plumb serve's fleet service (docs/fleet.md, docs/api.md).

Set-up, on the server's database (--dir DIR or --db URL):
  plumb fleet org create NAME            an organization and its first join token
  plumb fleet join-token create --org O  another join token
  plumb fleet user add NAME --org O --role admin   (password from $PLUMB_PASSWORD or stdin)
  plumb fleet token create --org O --name N --role viewer

Reading, through the API (--server URL --org O, token in $PLUMB_TOKEN or --token):
  plumb fleet devices | groups | releases | pending | audit | events DEVICE   (--json)`,
	}
	cmd.AddCommand(newFleetOrgCmd(e), newFleetJoinTokenCmd(e), newFleetUserCmd(e), newFleetTokenCmd(e))
	for _, l := range fleetLists {
		cmd.AddCommand(newFleetListCmd(e, l))
	}
	return cmd
}

func newFleetOrgCmd(e *cli.Env) *cobra.Command {
	var o fleetDBOptions
	var max int64
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Create an organization and its first join token",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !validName(args[0]) {
				return cli.BadInput(fmt.Errorf("organization name %q: expected 1-63 of a-z 0-9 . _ -", args[0]))
			}
			db, err := o.open(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			org, err := db.CreateOrg(cmd.Context(), args[0], max)
			if errors.Is(err, store.ErrExists) {
				return cli.BadInput(err)
			}
			if err != nil {
				return err
			}
			tok, err := db.CreateJoinToken(cmd.Context(), org.ID, "first")
			if err != nil {
				return err
			}
			db.Audit(cmd.Context(), store.AuditEntry{OrgID: org.ID, Actor: cliActor(), Action: "org.create", Target: org.Name})
			fmt.Fprintf(e.Stdout, "organization %s (%s)\njoin token: %s\n", org.Name, org.ID, tok)
			return nil
		},
	}
	o.flags(create)
	create.Flags().Int64Var(&max, "max-devices", store.DefaultMaxDevices, "the most devices the organization may have")
	var caOpts fleetDBOptions
	var caOrg string
	ekCA := &cobra.Command{
		Use:   "ek-ca FILE...",
		Short: "Trust EK certificates chaining to these PEM CAs as the organization's join credential",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := caOpts.open(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			or, err := db.OrgByName(cmd.Context(), caOrg)
			if err != nil {
				return cli.BadInput(err)
			}
			for _, p := range args {
				pem, err := os.ReadFile(p)
				if err != nil {
					return cli.BadInput(err)
				}
				if !x509.NewCertPool().AppendCertsFromPEM(pem) {
					return cli.BadInput(fmt.Errorf("%s: expected PEM certificates, found none", p))
				}
				if err := db.AddEKCA(cmd.Context(), or.ID, string(pem)); err != nil {
					return err
				}
				db.Audit(cmd.Context(), store.AuditEntry{OrgID: or.ID, Actor: cliActor(), Action: "ek-ca.add", Target: filepath.Base(p)})
			}
			fmt.Fprintf(e.Stdout, "organization %s trusts EK certificates from %d more file(s)\n", or.Name, len(args))
			return nil
		},
	}
	caOpts.flags(ekCA)
	ekCA.Flags().StringVar(&caOrg, "org", "", "the organization (required)")
	ekCA.MarkFlagRequired("org")
	cmd := &cobra.Command{Use: "org", Short: "Organizations"}
	cmd.AddCommand(create, ekCA)
	return cmd
}

func newFleetJoinTokenCmd(e *cli.Env) *cobra.Command {
	var o fleetDBOptions
	var org, name string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a join token for an organization (put it in images with plumb build --join-token)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !validName(name) {
				return cli.BadInput(fmt.Errorf("--name %q: expected 1-63 of a-z 0-9 . _ -", name))
			}
			db, err := o.open(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			or, err := db.OrgByName(cmd.Context(), org)
			if err != nil {
				return cli.BadInput(err)
			}
			tok, err := db.CreateJoinToken(cmd.Context(), or.ID, name)
			if err != nil {
				return err
			}
			db.Audit(cmd.Context(), store.AuditEntry{OrgID: or.ID, Actor: cliActor(), Action: "join-token.create", Target: name})
			fmt.Fprintln(e.Stdout, tok)
			return nil
		},
	}
	o.flags(create)
	create.Flags().StringVar(&org, "org", "", "the organization (required)")
	create.Flags().StringVar(&name, "name", "cli", "a name for the token, shown in the devices' history")
	create.MarkFlagRequired("org")
	cmd := &cobra.Command{Use: "join-token", Short: "Join tokens"}
	cmd.AddCommand(create)
	return cmd
}

func newFleetUserCmd(e *cli.Env) *cobra.Command {
	var o fleetDBOptions
	var org, role string
	add := &cobra.Command{
		Use:   "add NAME",
		Short: "Add an operator (or give one a role in another organization); the password comes from $PLUMB_PASSWORD or stdin",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			db, or, err := o.openOrg(ctx, "user name", args[0], role, org)
			if err != nil {
				return err
			}
			defer db.Close()
			u, err := db.UserByName(ctx, args[0])
			if errors.Is(err, store.ErrNotFound) {
				pw := os.Getenv("PLUMB_PASSWORD")
				if pw == "" {
					line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
					pw = strings.TrimRight(line, "\r\n")
				}
				hash, herr := server.HashPassword(pw)
				if herr != nil {
					return cli.BadInput(herr)
				}
				u, err = db.CreateUser(ctx, args[0], hash)
			}
			if err != nil {
				return err
			}
			if err := db.SetRole(ctx, u.ID, or.ID, role); err != nil {
				return err
			}
			db.Audit(ctx, store.AuditEntry{OrgID: or.ID, Actor: cliActor(), Action: "user.role", Target: u.Name, Detail: role})
			fmt.Fprintf(e.Stdout, "user %s: %s of %s\n", u.Name, role, or.Name)
			return nil
		},
	}
	o.flags(add)
	add.Flags().StringVar(&org, "org", "", "the organization (required)")
	add.Flags().StringVar(&role, "role", store.RoleViewer, "viewer, operator or admin")
	add.MarkFlagRequired("org")
	cmd := &cobra.Command{Use: "user", Short: "Operators"}
	cmd.AddCommand(add)
	return cmd
}

func newFleetTokenCmd(e *cli.Env) *cobra.Command {
	var o fleetDBOptions
	var org, name, role string
	var ttl time.Duration
	create := &cobra.Command{
		Use:   "create",
		Short: "Create an API token (printed once; only its hash is kept)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			db, or, err := o.openOrg(ctx, "--name", name, role, org)
			if err != nil {
				return err
			}
			defer db.Close()
			t, secret, err := db.CreateToken(ctx, or.ID, name, role, ttl)
			if err != nil {
				return err
			}
			db.Audit(ctx, store.AuditEntry{OrgID: or.ID, Actor: cliActor(), Action: "token.create", Target: t.ID, Detail: name + " " + role})
			fmt.Fprintln(e.Stdout, secret)
			return nil
		},
	}
	o.flags(create)
	create.Flags().StringVar(&org, "org", "", "the organization (required)")
	create.Flags().StringVar(&name, "name", "cli", "the token's name")
	create.Flags().StringVar(&role, "role", store.RoleViewer, "viewer, operator or admin")
	create.Flags().DurationVar(&ttl, "expires-in", 0, "lifetime, e.g. 720h (0: no expiry)")
	create.MarkFlagRequired("org")
	cmd := &cobra.Command{Use: "token", Short: "API tokens"}
	cmd.AddCommand(create)
	return cmd
}

func validName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i, c := range s {
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || (i > 0 && strings.ContainsRune("._-", c))
		if !ok {
			return false
		}
	}
	return true
}

// fleetList is one listing command: an API path and its table.
type fleetList struct {
	use, short, path, key string
	args                  int
	cols                  []string // JSON fields, in order
}

var fleetLists = []fleetList{
	{use: "devices", short: "List the organization's devices (and those granted to it)", path: "devices", key: "devices",
		cols: []string{"id", "hardware", "version", "lifecycle", "update_phase", "verdict", "last_seen", "last_event"}},
	{use: "groups", short: "List the groups of the organization's devices", path: "groups", key: "groups", cols: []string{"group", "devices"}},
	{use: "releases", short: "List the releases the organization's devices run or tried", path: "releases", key: "releases",
		cols: []string{"hardware", "version", "devices", "tried", "failed"}},
	{use: "pending", short: "List devices refused for want of a join credential (admin)", path: "pending", key: "pending",
		cols: []string{"id", "reason", "remote", "last_seen", "attempts"}},
	{use: "audit", short: "Show the organization's audit log, newest first", path: "audit", key: "audit",
		cols: []string{"at", "actor", "action", "target", "detail"}},
	{use: "events DEVICE", short: "Show a device's history", path: "devices/%s/events", key: "events", args: 1,
		cols: []string{"seq", "at", "kind", "version", "summary"}},
}

type fleetAPIOptions struct {
	server, org, token, ca string
	json                   bool
	query                  []string
}

func newFleetListCmd(e *cli.Env, l fleetList) *cobra.Command {
	var o fleetAPIOptions
	cmd := &cobra.Command{
		Use:   l.use,
		Short: l.short,
		Args:  cobra.ExactArgs(l.args),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := l.path
			if l.args == 1 {
				path = fmt.Sprintf(path, url.PathEscape(args[0]))
			}
			return runFleetList(cmd.Context(), e, o, l, path)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.server, "server", "", "the fleet service's URL, e.g. https://fleet.example.com/ (required)")
	f.StringVar(&o.org, "org", "", "the organization (required)")
	f.StringVar(&o.token, "token", "", "API token (default $PLUMB_TOKEN)")
	f.StringVar(&o.ca, "ca", "", "PEM CA bundle the server's certificate chains to (plumb serve's DIR/tls/ca.pem)")
	f.BoolVar(&o.json, "json", false, "print the API's JSON")
	if l.use == "devices" {
		f.StringArrayVar(&o.query, "filter", nil, "KEY=VALUE filter: q (search), group, hardware, version (repeatable)")
	}
	cmd.MarkFlagRequired("server")
	cmd.MarkFlagRequired("org")
	return cmd
}

func runFleetList(ctx context.Context, e *cli.Env, o fleetAPIOptions, l fleetList, path string) error {
	tok := o.token
	if tok == "" {
		tok = os.Getenv("PLUMB_TOKEN")
	}
	if tok == "" {
		return cli.BadInput(errors.New("--token: expected an API token (or $PLUMB_TOKEN), got none"))
	}
	base, err := url.Parse(o.server)
	if err != nil || (base.Scheme != "https" && base.Scheme != "http") || base.Host == "" {
		return cli.BadInput(fmt.Errorf("--server %q: expected an https:// URL", o.server))
	}
	q := url.Values{}
	for _, kv := range o.query {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || (k != "q" && k != "group" && k != "hardware" && k != "version") {
			return cli.BadInput(fmt.Errorf("--filter %q: expected q=, group=, hardware= or version=VALUE", kv))
		}
		q.Set(k, v)
	}
	u := strings.TrimRight(base.String(), "/") + "/v1/orgs/" + url.PathEscape(o.org) + "/" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	hc, err := fleetHTTPClient(o.ca)
	if err != nil {
		return cli.BadInput(err)
	}
	hc.Timeout = time.Minute
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return cli.BadInput(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var p struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(body))
		if json.Unmarshal(body, &p) == nil && p.Error != "" {
			msg = p.Error
		}
		err := fmt.Errorf("fleet service: %s: %s", resp.Status, msg)
		if resp.StatusCode/100 == 4 {
			return cli.BadInput(err)
		}
		return err
	}
	if o.json {
		_, err := e.Stdout.Write(append(body, '\n'))
		return err
	}
	var page map[string]json.RawMessage
	var rows []map[string]any
	if err := json.Unmarshal(body, &page); err != nil {
		return fmt.Errorf("fleet service: decoding the answer: %w", err)
	}
	if err := json.Unmarshal(page[l.key], &rows); err != nil {
		return fmt.Errorf("fleet service: decoding %s: %w", l.key, err)
	}
	tw := tabwriter.NewWriter(e.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.ToUpper(strings.Join(l.cols, "\t")))
	for _, r := range rows {
		var cells []string
		for _, c := range l.cols {
			v := r[c]
			s := ""
			switch x := v.(type) {
			case nil:
			case string:
				s = x
			case float64:
				s = fmt.Sprint(int64(x))
			default:
				s = fmt.Sprint(x)
			}
			s = strings.ReplaceAll(s, "\t", " ")
			if len(s) > 60 {
				s = s[:57] + "..."
			}
			cells = append(cells, s)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// fleetHTTPClient trusts the system roots plus caFile, if given.
func fleetHTTPClient(caFile string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca %s: expected PEM certificates, found none", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	return &http.Client{Transport: tr}, nil
}
