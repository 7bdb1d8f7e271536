package probe

import "strings"

// imapTag labels our only command; its tagged answer ends the dialogue.
const imapTag = "a001"

// imapWords splits "* OK text" or "a001 NO text" into its tag, its status
// word (upper-cased) and the rest.
func imapWords(line string) (tag, status, text string) {
	tag, rest, _ := strings.Cut(line, " ")
	status, text, _ = strings.Cut(rest, " ")
	return tag, strings.ToUpper(status), text
}

// checkIMAPGreeting accepts "* OK" and "* PREAUTH" (RFC 9051 7.1).
func checkIMAPGreeting(line string) error {
	tag, status, _ := imapWords(line)
	if tag != "*" {
		return protoErr("imap", "malformed greeting: %s", quote(line))
	}
	switch status {
	case "OK", "PREAUTH":
		return nil
	case "BYE":
		return protoErr("imap", "server refused the session: %s", quote(line))
	}
	return protoErr("imap", "malformed greeting: %s", quote(line))
}

// imapStartTLSAnswer judges one line after "a001 STARTTLS": done is true on
// the tagged OK; untagged lines are skipped (done false, no error).
func imapStartTLSAnswer(line string) (done bool, err error) {
	tag, status, _ := imapWords(line)
	switch {
	case tag == "*" && status == "BYE":
		return false, protoErr("imap", "server closed the session: %s", quote(line))
	case tag == "*":
		return false, nil
	case tag != imapTag:
		return false, protoErr("imap", "unexpected answer to STARTTLS: %s", quote(line))
	case status == "OK":
		return true, nil
	case status == "NO" || status == "BAD":
		return false, protoErr("imap", "STARTTLS refused: %s", quote(line))
	}
	return false, protoErr("imap", "malformed answer to STARTTLS: %s", quote(line))
}

// startIMAP speaks RFC 9051 6.2.1: greeting, a001 STARTTLS, a001 OK.
func startIMAP(c *PreambleConn, _ PreambleOptions) error {
	line, err := readLine(c.R)
	if err != nil {
		return readFailed("imap", "the greeting", err)
	}
	if err := checkIMAPGreeting(line); err != nil {
		return err
	}
	if err := c.WriteString(imapTag + " STARTTLS\r\n"); err != nil {
		return err
	}
	for {
		line, err := readLine(c.R)
		if err != nil {
			return readFailed("imap", "the STARTTLS answer", err)
		}
		done, err := imapStartTLSAnswer(line)
		if err != nil || done {
			return err
		}
	}
}
