package probe

import (
	"bufio"
	"strings"
)

// readFTPReply reads one FTP reply (RFC 959 4.2): "220-" opens a multi-line
// reply whose middle lines may be any text, and "220 " (the same code and a
// space) closes it.
func readFTPReply(br *bufio.Reader, what string) (reply, error) {
	line, err := readLine(br)
	if err != nil {
		return reply{}, readFailed("ftp", what, err)
	}
	code, more, ok := parseReplyLine(line)
	if !ok {
		return reply{}, protoErr("ftp", "malformed reply to %s: %s", what, quote(line))
	}
	r := reply{Code: code, Lines: []string{line}}
	end := line[:3]
	for more {
		if line, err = readLine(br); err != nil {
			return reply{}, readFailed("ftp", what, err)
		}
		r.Lines = append(r.Lines, line)
		more = !(line == end || strings.HasPrefix(line, end+" "))
	}
	return r, nil
}

// startFTP speaks RFC 4217: greeting, AUTH TLS, 234.
func startFTP(c *PreambleConn, _ PreambleOptions) error {
	r, err := readFTPReply(c.R, "the greeting")
	if err != nil {
		return err
	}
	// 120 means "ready in a moment": the real greeting follows.
	if r.Code == 120 {
		if r, err = readFTPReply(c.R, "the greeting"); err != nil {
			return err
		}
	}
	if r.Code != 220 {
		return protoErr("ftp", "server refused the session: %s", quote(r.String()))
	}
	if err := c.WriteString("AUTH TLS\r\n"); err != nil {
		return err
	}
	if r, err = readFTPReply(c.R, "the AUTH TLS reply"); err != nil {
		return err
	}
	if r.Code != 234 {
		return protoErr("ftp", "AUTH TLS refused: %s", quote(r.String()))
	}
	return nil
}
