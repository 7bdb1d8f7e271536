package probe

import (
	"bufio"
	"encoding/xml"
	"errors"
	"fmt"
	"strings"
)

// XMPP namespaces (RFC 6120).
const (
	nsStreams      = "http://etherx.jabber.org/streams"
	nsXMPPTLS      = "urn:ietf:params:xml:ns:xmpp-tls"
	nsStreamErrors = "urn:ietf:params:xml:ns:xmpp-streams"
)

func startXMPPClient(c *PreambleConn, o PreambleOptions) error {
	return startXMPP(c, o, "xmpp", "jabber:client")
}

func startXMPPServer(c *PreambleConn, o PreambleOptions) error {
	return startXMPP(c, o, "xmpp-server", "jabber:server")
}

// startXMPP speaks RFC 6120 5.4: stream header, features, <starttls/>,
// <proceed/>.
func startXMPP(c *PreambleConn, o PreambleOptions, proto, ns string) error {
	domain := o.XMPPHost
	if domain == "" {
		domain = o.Host
	}
	if domain == "" {
		return protoErr(proto, "no XMPP domain to ask for (set the XMPP host)")
	}
	var to strings.Builder
	_ = xml.EscapeText(&to, []byte(domain)) // escapes quotes too; writes to memory
	header := "<?xml version='1.0'?><stream:stream xmlns='" + ns + "'"
	if ns == "jabber:server" {
		// Servers that still speak dialback expect its namespace declared.
		header += " xmlns:db='jabber:server:dialback'"
	}
	header += " xmlns:stream='" + nsStreams + "' to='" + to.String() + "' version='1.0'>"
	if err := c.WriteString(header); err != nil {
		return err
	}
	if err := expectXML(c.R, proto); err != nil {
		return err
	}
	// c.R is an io.ByteReader, so the decoder pulls bytes one at a time
	// from it and holds no buffer of its own: after <proceed/> nothing past
	// its closing '>' has been taken from c.R.
	d := xml.NewDecoder(c.R)
	if err := readXMPPStreamHeader(d, proto); err != nil {
		return err
	}
	offered, err := readXMPPFeatures(d, proto)
	if err != nil {
		return err
	}
	if !offered {
		return protoErr(proto, "server does not offer STARTTLS")
	}
	if err := c.WriteString("<starttls xmlns='" + nsXMPPTLS + "'/>"); err != nil {
		return err
	}
	return readXMPPProceed(d, proto)
}

// xmppToken returns the next start or end element, skipping whitespace,
// comments and processing instructions.
func xmppToken(d *xml.Decoder, proto, what string) (xml.Token, error) {
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, xmlFailed(proto, what, err)
		}
		switch t := tok.(type) {
		case xml.StartElement, xml.EndElement:
			return tok, nil
		case xml.CharData:
			// Only whitespace (keepalives) may stand between elements;
			// anything else is another protocol talking.
			if s := strings.TrimSpace(string(t)); s != "" {
				return nil, protoErr(proto, "unexpected text in %s: %s", what, quote(s))
			}
		}
	}
}

// expectXML fails fast when the server's first non-blank byte cannot start
// XML: encoding/xml would wait for a '<' that another protocol never sends.
func expectXML(r *bufio.Reader, proto string) error {
	for {
		b, err := r.ReadByte()
		if err != nil {
			return readFailed(proto, "the stream header", err)
		}
		switch b {
		case ' ', '\t', '\r', '\n':
			continue
		case '<':
			return r.UnreadByte()
		}
		more, _ := r.Peek(min(r.Buffered(), 60))
		return protoErr(proto, "expected an XML stream, got %s", quote(string(b)+string(more)))
	}
}

// xmlFailed tells malformed XML from a failed read.
func xmlFailed(proto, what string, err error) error {
	var se *xml.SyntaxError
	if errors.As(err, &se) {
		return protoErr(proto, "malformed XML in %s: %v", what, err)
	}
	return readFailed(proto, what, err)
}

// readXMPPStreamHeader reads the server's <stream:stream ...> opening.
func readXMPPStreamHeader(d *xml.Decoder, proto string) error {
	tok, err := xmppToken(d, proto, "the stream header")
	if err != nil {
		return err
	}
	se, ok := tok.(xml.StartElement)
	if !ok || se.Name.Space != nsStreams || se.Name.Local != "stream" {
		return protoErr(proto, "expected a stream header, got %s", describe(tok))
	}
	return nil
}

// readXMPPFeatures reads <stream:features> and reports whether it offers
// <starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>.
func readXMPPFeatures(d *xml.Decoder, proto string) (bool, error) {
	const what = "the stream features"
	tok, err := xmppToken(d, proto, what)
	if err != nil {
		return false, err
	}
	se, ok := tok.(xml.StartElement)
	switch {
	case ok && se.Name.Space == nsStreams && se.Name.Local == "error":
		return false, readXMPPStreamError(d, proto)
	case !ok || se.Name.Space != nsStreams || se.Name.Local != "features":
		return false, protoErr(proto, "expected stream features, got %s", describe(tok))
	}
	offered := false
	for {
		tok, err := xmppToken(d, proto, what)
		if err != nil {
			return false, err
		}
		child, ok := tok.(xml.StartElement)
		if !ok {
			return offered, nil // </stream:features>
		}
		if child.Name.Space == nsXMPPTLS && child.Name.Local == "starttls" {
			offered = true
		}
		if err := d.Skip(); err != nil {
			return false, xmlFailed(proto, what, err)
		}
	}
}

// readXMPPProceed reads the answer to <starttls/>: <proceed/> (read up to
// and including its end, so nothing of it is left unread) or <failure/>.
func readXMPPProceed(d *xml.Decoder, proto string) error {
	const what = "the STARTTLS answer"
	tok, err := xmppToken(d, proto, what)
	if err != nil {
		return err
	}
	se, ok := tok.(xml.StartElement)
	switch {
	case ok && se.Name.Space == nsXMPPTLS && se.Name.Local == "proceed":
		// For <proceed/> the decoder makes up the end element without
		// reading; for <proceed></proceed> it reads exactly to its '>'.
		if err := d.Skip(); err != nil {
			return xmlFailed(proto, what, err)
		}
		return nil
	case ok && se.Name.Space == nsXMPPTLS && se.Name.Local == "failure":
		return protoErr(proto, "STARTTLS refused (<failure/>)")
	case ok && se.Name.Space == nsStreams && se.Name.Local == "error":
		return readXMPPStreamError(d, proto)
	}
	return protoErr(proto, "unexpected answer to STARTTLS: %s", describe(tok))
}

// readXMPPStreamError reads the rest of a <stream:error> (RFC 6120 4.9) and
// returns it as an error naming its condition and text.
func readXMPPStreamError(d *xml.Decoder, proto string) error {
	var condition, text string
	inText := false
	// Stop at the end of <stream:error>, or at any error: the server is
	// closing the stream and what we have is the best report.
	for depth := 1; depth > 0; {
		tok, err := d.Token()
		if err != nil {
			break
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			switch {
			case depth != 2 || t.Name.Space != nsStreamErrors:
			case t.Name.Local == "text":
				inText = true
			case condition == "":
				condition = t.Name.Local
			}
		case xml.EndElement:
			depth--
			inText = false
		case xml.CharData:
			if inText && len(text) < 200 {
				text += string(t)
			}
		}
	}
	if condition == "" {
		condition = "undefined-condition"
	}
	if text != "" {
		return protoErr(proto, "stream error <%s/>: %s", condition, quote(text))
	}
	return protoErr(proto, "stream error <%s/>", condition)
}

// describe names an element for an error message.
func describe(tok xml.Token) string {
	switch t := tok.(type) {
	case xml.StartElement:
		return fmt.Sprintf("<%s xmlns=%s>", t.Name.Local, quote(t.Name.Space))
	case xml.EndElement:
		if t.Name.Local == "stream" {
			return "the end of the stream"
		}
		return fmt.Sprintf("</%s>", t.Name.Local)
	}
	return fmt.Sprintf("%T", tok)
}
