package notify

import (
	"strings"
	"testing"
	"time"

	"github.com/certmon/certmon/internal/store"
)

func utc(s string) time.Time {
	t, err := time.Parse("2006-01-02 15:04:05", s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestSendAt(t *testing.T) {
	night := func(tz string) store.NotifySettings {
		return store.NotifySettings{QuietStart: "22:00", QuietEnd: "07:00", TimeZone: tz}
	}
	digest := func(at, tz string) store.NotifySettings {
		return store.NotifySettings{Mode: ModeDigest, DigestAt: at, TimeZone: tz}
	}
	with := func(s store.NotifySettings, start, end string) store.NotifySettings {
		s.QuietStart, s.QuietEnd = start, end
		return s
	}
	// Times are UTC. Berlin is UTC+1 (CET) in winter and UTC+2 (CEST) in
	// summer; in 2026 the clock springs 02:00 -> 03:00 on March 29 and
	// falls 03:00 -> 02:00 on October 25.
	for _, c := range []struct {
		name string
		s    store.NotifySettings
		now  string
		want string
	}{
		{"immediate", store.NotifySettings{}, "2026-03-01 03:00:00", "2026-03-01 03:00:00"},
		{"immediate explicit", store.NotifySettings{Mode: ModeImmediate}, "2026-03-01 03:00:00", "2026-03-01 03:00:00"},
		{"before quiet", night(""), "2026-03-01 21:59:59", "2026-03-01 21:59:59"},
		{"quiet starts", night(""), "2026-03-01 22:00:00", "2026-03-02 07:00:00"},
		{"quiet before midnight", night(""), "2026-03-01 23:00:00", "2026-03-02 07:00:00"},
		{"quiet after midnight", night(""), "2026-03-02 03:00:00", "2026-03-02 07:00:00"},
		{"quiet last seconds", night(""), "2026-03-02 06:59:30", "2026-03-02 07:00:00"},
		{"quiet over", night(""), "2026-03-02 07:00:00", "2026-03-02 07:00:00"},
		{"month end wrap", night(""), "2026-02-28 23:00:00", "2026-03-01 07:00:00"},
		{"daytime quiet", with(store.NotifySettings{}, "12:00", "13:30"), "2026-03-01 12:30:00", "2026-03-01 13:30:00"},
		{"daytime quiet over", with(store.NotifySettings{}, "12:00", "13:30"), "2026-03-01 13:30:00", "2026-03-01 13:30:00"},
		{"daytime quiet not wrapping", with(store.NotifySettings{}, "12:00", "13:30"), "2026-03-01 23:00:00", "2026-03-01 23:00:00"},

		{"Berlin winter", night("Europe/Berlin"), "2026-01-15 22:30:00", "2026-01-16 06:00:00"},
		{"Berlin winter outside", night("Europe/Berlin"), "2026-01-15 20:30:00", "2026-01-15 20:30:00"},
		{"Berlin summer", night("Europe/Berlin"), "2026-07-15 20:30:00", "2026-07-16 05:00:00"},
		{"New York previous local day", night("America/New_York"), "2026-07-01 03:00:00", "2026-07-01 11:00:00"},
		{"Kolkata half-hour zone", night("Asia/Kolkata"), "2026-03-01 17:00:00", "2026-03-02 01:30:00"},

		// The night the clock springs forward is 8 hours long, not 9.
		{"spring night", night("Europe/Berlin"), "2026-03-28 22:00:00", "2026-03-29 05:00:00"},
		// The night it falls back is 10 hours long.
		{"fall night", night("Europe/Berlin"), "2026-10-24 21:00:00", "2026-10-25 06:00:00"},
		// 02:30 never happens on March 29: quiet ends when the clock
		// jumps past it, at 03:00 CEST.
		{"quiet end skipped", with(store.NotifySettings{TimeZone: "Europe/Berlin"}, "01:00", "02:30"), "2026-03-29 00:30:00", "2026-03-29 01:00:00"},
		// 02:30 happens twice on October 25: quiet ends at the first...
		{"quiet end twice, first pass", with(store.NotifySettings{TimeZone: "Europe/Berlin"}, "01:00", "02:30"), "2026-10-24 23:30:00", "2026-10-25 00:30:00"},
		// ...the clock is then outside quiet hours until it reads 02:00 again...
		{"between the passes", with(store.NotifySettings{TimeZone: "Europe/Berlin"}, "01:00", "02:30"), "2026-10-25 00:40:00", "2026-10-25 00:40:00"},
		// ...and in them again until the second 02:30.
		{"quiet end twice, second pass", with(store.NotifySettings{TimeZone: "Europe/Berlin"}, "01:00", "02:30"), "2026-10-25 01:10:00", "2026-10-25 01:30:00"},

		{"digest default time today", store.NotifySettings{Mode: ModeDigest}, "2026-03-01 07:00:00", "2026-03-01 08:00:00"},
		{"digest due now", digest("08:00", ""), "2026-03-01 08:00:00", "2026-03-01 08:00:00"},
		{"digest tomorrow", digest("08:00", ""), "2026-03-01 08:00:01", "2026-03-02 08:00:00"},
		{"digest year end", digest("08:00", ""), "2026-12-31 09:00:00", "2027-01-01 08:00:00"},
		{"digest in zone today", digest("18:30", "Asia/Kolkata"), "2026-03-01 12:00:00", "2026-03-01 13:00:00"},
		{"digest in zone tomorrow", digest("18:30", "Asia/Kolkata"), "2026-03-01 13:30:00", "2026-03-02 13:00:00"},
		// Local today is already tomorrow in UTC terms.
		{"digest local date", digest("08:00", "Pacific/Auckland"), "2026-03-01 20:00:00", "2026-03-02 19:00:00"},
		{"digest across spring change", digest("08:00", "Europe/Berlin"), "2026-03-28 08:00:00", "2026-03-29 06:00:00"},
		{"digest across fall change", digest("08:00", "Europe/Berlin"), "2026-10-24 07:00:00", "2026-10-25 07:00:00"},
		{"digest time skipped", digest("02:30", "Europe/Berlin"), "2026-03-28 23:00:00", "2026-03-29 01:00:00"},
		{"digest time twice", digest("02:30", "Europe/Berlin"), "2026-10-24 22:00:00", "2026-10-25 00:30:00"},
		{"digest time twice, after the first", digest("02:30", "Europe/Berlin"), "2026-10-25 00:45:00", "2026-10-26 01:30:00"},
		{"digest in quiet hours", with(digest("06:00", ""), "22:00", "07:00"), "2026-03-01 05:00:00", "2026-03-01 07:00:00"},
		{"digest tomorrow in quiet hours", with(digest("06:00", ""), "22:00", "07:00"), "2026-03-01 23:00:00", "2026-03-02 07:00:00"},
		{"digest outside quiet hours", with(digest("08:00", "Europe/Berlin"), "22:00", "07:00"), "2026-03-01 23:00:00", "2026-03-02 07:00:00"},

		{"unknown zone is UTC", night("Mars/Olympus"), "2026-03-01 23:00:00", "2026-03-02 07:00:00"},
		{"bad digest time is the default", digest("8am", ""), "2026-03-01 07:00:00", "2026-03-01 08:00:00"},
		{"half quiet hours ignored", store.NotifySettings{QuietStart: "22:00"}, "2026-03-01 23:00:00", "2026-03-01 23:00:00"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := SendAt(c.s, utc(c.now))
			if want := utc(c.want); !got.Equal(want) {
				t.Errorf("SendAt(%+v, %s UTC) = %s (%s UTC), want %s UTC", c.s, c.now, got, got.UTC().Format(time.DateTime), c.want)
			}
		})
	}
}

func TestSendAtLocationOfNow(t *testing.T) {
	// The instant matters, not the location now happens to carry.
	tokyo, err := time.LoadLocation("Asia/Tokyo")
	if err != nil {
		t.Fatal(err)
	}
	s := store.NotifySettings{QuietStart: "22:00", QuietEnd: "07:00", TimeZone: "Europe/Berlin"}
	now := utc("2026-01-15 22:30:00")
	if got, want := SendAt(s, now.In(tokyo)), utc("2026-01-16 06:00:00"); !got.Equal(want) {
		t.Errorf("got %s, want %s", got, want)
	}
	if got := SendAt(s, now); got.Location().String() != "Europe/Berlin" {
		t.Errorf("result in %s, want the user's zone", got.Location())
	}
}

func TestValidateSettings(t *testing.T) {
	kinds := []string{"expiry_reminder", "expired", "recovered"}
	for _, c := range []struct {
		name string
		s    store.NotifySettings
		err  string // "" valid, else a substring of the error
	}{
		{"empty", store.NotifySettings{}, ""},
		{"immediate", store.NotifySettings{Mode: ModeImmediate}, ""},
		{"digest default time", store.NotifySettings{Mode: ModeDigest}, ""},
		{"full", store.NotifySettings{Mode: ModeDigest, DigestAt: "7:30", Events: []string{"expired"},
			QuietStart: "22:00", QuietEnd: "07:00", TimeZone: "America/New_York"}, ""},
		{"midnight", store.NotifySettings{QuietStart: "00:00", QuietEnd: "23:59"}, ""},
		{"bad mode", store.NotifySettings{Mode: "weekly"}, "notifications.mode"},
		{"bad digest time", store.NotifySettings{Mode: ModeDigest, DigestAt: "24:00"}, "notifications.digest_at"},
		{"digest seconds", store.NotifySettings{DigestAt: "08:00:00"}, "notifications.digest_at"},
		{"digest signed", store.NotifySettings{DigestAt: "+8:00"}, "notifications.digest_at"},
		{"quiet start only", store.NotifySettings{QuietStart: "22:00"}, "notifications.quiet_end"},
		{"quiet end only", store.NotifySettings{QuietEnd: "07:00"}, "notifications.quiet_start"},
		{"bad quiet start", store.NotifySettings{QuietStart: "10pm", QuietEnd: "07:00"}, "notifications.quiet_start"},
		{"bad quiet end", store.NotifySettings{QuietStart: "22:00", QuietEnd: "07:60"}, "notifications.quiet_end"},
		{"empty quiet period", store.NotifySettings{QuietStart: "22:00", QuietEnd: "22:00"}, "notifications.quiet_end"},
		{"bad zone", store.NotifySettings{TimeZone: "Europe/Atlantis"}, "notifications.time_zone"},
		{"server zone", store.NotifySettings{TimeZone: "Local"}, "notifications.time_zone"},
		{"unknown event", store.NotifySettings{Events: []string{"expired", "party"}}, `notifications.events: unknown event kind "party"`},
	} {
		err := ValidateSettings(c.s, kinds)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.err != "" && err == nil:
			t.Errorf("%s: valid, want an error about %s", c.name, c.err)
		case c.err != "" && !strings.Contains(err.Error(), c.err):
			t.Errorf("%s: %v, want it to name %s", c.name, err, c.err)
		}
	}
}

func TestWants(t *testing.T) {
	all := store.NotifySettings{}
	some := store.NotifySettings{Events: []string{"expired", "recovered"}}
	for _, c := range []struct {
		s    store.NotifySettings
		kind string
		want bool
	}{
		{all, "expired", true},
		{all, "anything", true},
		{some, "expired", true},
		{some, "recovered", true},
		{some, "expiry_reminder", false},
	} {
		if got := Wants(c.s, c.kind); got != c.want {
			t.Errorf("Wants(%v, %s) = %v, want %v", c.s.Events, c.kind, got, c.want)
		}
	}
}
