package probe

import "strings"

// checkPOP3 accepts a "+OK" status line (RFC 1939 3); "-ERR" becomes
// "<refused>: line", anything else a malformed answer to what.
func checkPOP3(line, what, refused string) error {
	status, _, _ := strings.Cut(line, " ")
	switch strings.ToUpper(status) {
	case "+OK":
		return nil
	case "-ERR":
		return protoErr("pop3", "%s: %s", refused, quote(line))
	}
	return protoErr("pop3", "malformed %s: %s", what, quote(line))
}

// startPOP3 speaks RFC 2595 4: greeting, STLS, +OK.
func startPOP3(c *PreambleConn, _ PreambleOptions) error {
	line, err := readLine(c.R)
	if err != nil {
		return readFailed("pop3", "the greeting", err)
	}
	if err := checkPOP3(line, "greeting", "server refused the session"); err != nil {
		return err
	}
	if err := c.WriteString("STLS\r\n"); err != nil {
		return err
	}
	if line, err = readLine(c.R); err != nil {
		return readFailed("pop3", "the STLS answer", err)
	}
	return checkPOP3(line, "answer to STLS", "STLS refused")
}
