package probe

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// readLine returns one LF- or CRLF-terminated line without its end, at most
// maxLine bytes. Unlike PreambleConn.ReadLine (bufio.Reader.ReadLine), it
// never passes off the bytes before a read error as a whole line, so a
// banner cut off by the preamble limit reports the limit, not a bad line.
func readLine(r *bufio.Reader) (string, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(line)+len(chunk) > maxLine+2 {
			return "", errLineTooLong
		}
		line = append(line, chunk...)
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return "", err
		}
	}
	line = bytes.TrimSuffix(line[:len(line)-1], []byte("\r"))
	if len(line) > maxLine {
		return "", errLineTooLong
	}
	return string(line), nil
}

// lengthError is a binary protocol announcing a message larger than
// anything a server needs to send before TLS; we refuse to read it.
type lengthError struct {
	What  string
	N     uint64 // 0 when too large to decode
	Limit int
}

func (e *lengthError) Error() string {
	if e.N == 0 {
		return fmt.Sprintf("%s over the limit of %d bytes", e.What, e.Limit)
	}
	return fmt.Sprintf("%s announces %d bytes, over the limit of %d", e.What, e.N, e.Limit)
}

// readFailed explains a failed read, keeping the cause for errors.Is/As so
// timeouts and the preamble limit stay recognisable.
func readFailed(proto, what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%s: server closed the connection while we waited for %s: %w", proto, what, err)
	}
	return fmt.Errorf("%s: reading %s: %w", proto, what, err)
}

// reply is an SMTP or FTP reply: one three-digit code and its text lines.
type reply struct {
	Code  int
	Lines []string
}

// String gives the reply as the server sent it, for quoting in errors.
func (r reply) String() string { return strings.Join(r.Lines, "\n") }

// parseReplyLine splits "250-text" or "250 text" (or a bare "250") into its
// code and whether more lines follow.
func parseReplyLine(line string) (code int, more, ok bool) {
	if len(line) < 3 {
		return 0, false, false
	}
	for i := 0; i < 3; i++ {
		c := line[i]
		if c < '0' || c > '9' {
			return 0, false, false
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 || code > 599 {
		return 0, false, false
	}
	if len(line) == 3 {
		return code, false, true
	}
	switch line[3] {
	case '-':
		return code, true, true
	case ' ':
		return code, false, true
	}
	return 0, false, false
}

// readSMTPReply reads one possibly multi-line SMTP reply (RFC 5321 4.2.1):
// every line carries the same code, "-" after it on all but the last.
func readSMTPReply(br *bufio.Reader, what string) (reply, error) {
	var r reply
	for {
		line, err := readLine(br)
		if err != nil {
			return reply{}, readFailed("smtp", what, err)
		}
		code, more, ok := parseReplyLine(line)
		if !ok {
			return reply{}, protoErr("smtp", "malformed reply to %s: %s", what, quote(line))
		}
		if len(r.Lines) > 0 && code != r.Code {
			return reply{}, protoErr("smtp", "reply code changed from %d to %d within one reply: %s", r.Code, code, quote(line))
		}
		r.Code = code
		r.Lines = append(r.Lines, line)
		if !more {
			return r, nil
		}
	}
}

// offersSTARTTLS reports whether an EHLO reply lists the STARTTLS keyword;
// the first line is the server's name, not an extension.
func offersSTARTTLS(r reply) bool {
	if len(r.Lines) < 2 {
		return false
	}
	for _, line := range r.Lines[1:] {
		if len(line) < 4 {
			continue
		}
		kw, _, _ := strings.Cut(strings.TrimSpace(line[4:]), " ")
		if strings.EqualFold(kw, "STARTTLS") {
			return true
		}
	}
	return false
}

// startSMTP speaks RFC 3207: greeting, EHLO, STARTTLS, 220.
func startSMTP(c *PreambleConn, o PreambleOptions) error {
	r, err := readSMTPReply(c.R, "the greeting")
	if err != nil {
		return err
	}
	if r.Code != 220 {
		return protoErr("smtp", "server refused the session: %s", quote(r.String()))
	}
	name := o.ClientName
	if name == "" {
		name = "certmon.invalid"
	}
	if err := c.WriteString("EHLO " + name + "\r\n"); err != nil {
		return err
	}
	if r, err = readSMTPReply(c.R, "the EHLO reply"); err != nil {
		return err
	}
	if r.Code != 250 {
		return protoErr("smtp", "EHLO refused: %s", quote(r.String()))
	}
	if !offersSTARTTLS(r) {
		return protoErr("smtp", "server does not offer STARTTLS")
	}
	if err := c.WriteString("STARTTLS\r\n"); err != nil {
		return err
	}
	if r, err = readSMTPReply(c.R, "the STARTTLS reply"); err != nil {
		return err
	}
	if r.Code != 220 {
		return protoErr("smtp", "STARTTLS refused: %s", quote(r.String()))
	}
	return nil
}
