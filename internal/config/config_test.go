package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDefaultIsValid(t *testing.T) {
	d := Default()
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	if d.DatabaseURLOrDefault() != "certmon-data/certmon.db" {
		t.Errorf("default database %q", d.DatabaseURLOrDefault())
	}
}

func TestLoadValidFile(t *testing.T) {
	c := Default()
	if err := c.LoadFile("testdata/valid.yml"); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:9090" || c.Scheduler.Workers != 8 || c.Scheduler.Lease.Std() != 90*time.Second ||
		c.Check.WarnDays != 21 || c.Check.CritDays != 7 || len(c.CAFiles) != 1 {
		t.Errorf("loaded %+v", c)
	}
}

// Each invalid-*.yml file names its expected error in invalidCases.
var invalidCases = map[string]string{
	"invalid-unknown-key.yml":  "field listen_port not found",
	"invalid-duration.yml":     `"forever" is not a duration`,
	"invalid-thresholds.yml":   "crit_days <= warn_days",
	"invalid-tls-pair.yml":     "tls_cert and tls_key go together",
	"invalid-type.yml":         "cannot unmarshal",
	"invalid-deny-network.yml": `"not-a-network" is not a CIDR`,
}

func TestInvalidFiles(t *testing.T) {
	files, _ := filepath.Glob("testdata/invalid-*.yml")
	if len(files) != len(invalidCases) {
		t.Fatalf("%d invalid files, %d cases", len(files), len(invalidCases))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c := Default()
			err := c.LoadFile(f)
			if err == nil {
				err = c.Validate()
			}
			want := invalidCases[filepath.Base(f)]
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("error %v, want it to contain %q", err, want)
			}
		})
	}
}

func TestEnvOverlay(t *testing.T) {
	env := map[string]string{
		"CERTMON_LISTEN":                    "127.0.0.1:1234",
		"CERTMON_DATABASE_URL":              "postgres://x/y",
		"CERTMON_CA_FILE":                   "/a.pem, /b.pem",
		"CERTMON_SCHEDULER_WORKERS":         "3",
		"CERTMON_SCHEDULER_LEASE":           "45s",
		"CERTMON_CHECK_REVOCATION":          "off",
		"CERTMON_CLOUD_AGENT_DENY_NETWORKS": "169.254.0.0/16, 10.0.0.0/8",
	}
	c := Default()
	if err := c.LoadEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:1234" || c.DatabaseURL != "postgres://x/y" || strings.Join(c.CAFiles, "|") != "/a.pem|/b.pem" ||
		c.Scheduler.Workers != 3 || c.Scheduler.Lease.Std() != 45*time.Second || c.Check.Revocation != "off" ||
		strings.Join(c.CloudAgent.DenyNetworks, "|") != "169.254.0.0/16|10.0.0.0/8" {
		t.Errorf("env not applied: %+v", c)
	}
	bad := func(k string) (string, bool) {
		if k == "CERTMON_SCHEDULER_WORKERS" {
			return "lots", true
		}
		return "", false
	}
	if err := c.LoadEnv(bad); err == nil || !strings.Contains(err.Error(), "CERTMON_SCHEDULER_WORKERS") {
		t.Errorf("bad env value: %v", err)
	}
}

func TestEnvNamesCoverEverySetting(t *testing.T) {
	names := strings.Join(EnvNames(), " ")
	for _, want := range []string{"CERTMON_LISTEN", "CERTMON_DATA", "CERTMON_DATABASE_URL", "CERTMON_CA_FILE",
		"CERTMON_TLS_CERT", "CERTMON_TLS_KEY", "CERTMON_BOOTSTRAP_TOKEN", "CERTMON_SCHEDULER_WORKERS", "CERTMON_CHECK_TIMEOUT"} {
		if !strings.Contains(names, want) {
			t.Errorf("%s missing from %s", want, names)
		}
	}
}

func TestMissingFile(t *testing.T) {
	c := Default()
	err := c.LoadFile(filepath.Join(t.TempDir(), "nope.yml"))
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err %v", err)
	}
}
