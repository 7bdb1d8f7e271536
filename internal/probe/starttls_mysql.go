package probe

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
)

// MySQL capability flags (MySQL client/server protocol).
const (
	mysqlClientProtocol41       = 0x00000200
	mysqlClientSSL              = 0x00000800
	mysqlClientSecureConnection = 0x00008000
)

// mysqlCharset is utf8mb4_general_ci, known to MySQL 5.5+ and MariaDB.
const mysqlCharset = 45

// maxMySQLPacket bounds the initial handshake packet; real ones are about
// a hundred bytes.
const maxMySQLPacket = MaxPreambleBytes

// startMySQL reads the server's initial handshake and, when it supports
// TLS, sends SSLRequest; the server's next bytes are its TLS ServerHello.
func startMySQL(c *PreambleConn, _ PreambleOptions) error {
	seq, payload, err := readMySQLPacket(c.R)
	if err != nil {
		return err
	}
	hs, err := parseMySQLHandshake(payload)
	if err != nil {
		return err
	}
	if hs.Capabilities&mysqlClientSSL == 0 {
		return protoErr("mysql", "server does not support TLS (server version %s)", quote(hs.ServerVersion))
	}
	// SSLRequest: a 32-byte HandshakeResponse41 cut after its filler.
	pkt := make([]byte, 4, 4+32)
	pkt[0] = 32 // length, 3 bytes little-endian
	pkt[3] = seq + 1
	pkt = binary.LittleEndian.AppendUint32(pkt, mysqlClientSSL|mysqlClientProtocol41|mysqlClientSecureConnection)
	pkt = binary.LittleEndian.AppendUint32(pkt, 16<<20) // max packet size
	pkt = append(pkt, mysqlCharset)
	pkt = append(pkt, make([]byte, 23)...)
	return c.WriteString(string(pkt))
}

// readMySQLPacket reads one packet: 3-byte little-endian length, sequence
// number, payload.
func readMySQLPacket(r io.Reader) (seq byte, payload []byte, err error) {
	const what = "the server handshake"
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, readFailed("mysql", what, err)
	}
	n := int(hdr[0]) | int(hdr[1])<<8 | int(hdr[2])<<16
	if n > maxMySQLPacket {
		return 0, nil, fmt.Errorf("mysql: %w", &lengthError{What: "handshake packet", N: uint64(n), Limit: maxMySQLPacket})
	}
	if n == 0 {
		return 0, nil, protoErr("mysql", "empty handshake packet")
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, readFailed("mysql", what, err)
	}
	return hdr[3], payload, nil
}

// mysqlHandshake is what we need from the initial handshake packet.
type mysqlHandshake struct {
	ServerVersion string
	Capabilities  uint32
}

// parseMySQLHandshake decodes a HandshakeV10 payload, or reports the ERR
// packet a server sends instead (too many connections, host not allowed).
func parseMySQLHandshake(p []byte) (mysqlHandshake, error) {
	var hs mysqlHandshake
	if len(p) == 0 {
		return hs, protoErr("mysql", "empty handshake packet")
	}
	switch p[0] {
	case 10:
	case 0xff:
		return hs, protoErr("mysql", "server refused the connection: %s", parseMySQLError(p))
	default:
		return hs, protoErr("mysql", "unsupported protocol version %d", p[0])
	}
	p = p[1:]
	end := bytes.IndexByte(p, 0)
	if end < 0 {
		return hs, protoErr("mysql", "malformed handshake: unterminated server version")
	}
	hs.ServerVersion = string(p[:end])
	// connection id (4), auth-plugin-data part 1 (8), filler (1), then the
	// capabilities' lower half (2).
	p = p[end+1:]
	if len(p) < 4+8+1+2 {
		return hs, protoErr("mysql", "malformed handshake: %d bytes after the server version", len(p))
	}
	hs.Capabilities = uint32(binary.LittleEndian.Uint16(p[13:15]))
	// Then charset (1), status flags (2) and the upper half (2), which
	// servers older than 4.1 leave out.
	if p = p[15:]; len(p) >= 5 {
		hs.Capabilities |= uint32(binary.LittleEndian.Uint16(p[3:5])) << 16
	}
	return hs, nil
}

// parseMySQLError renders an ERR packet: 0xff, code (2), an optional
// "#" and SQLSTATE (5), then the message.
func parseMySQLError(p []byte) string {
	if len(p) < 3 {
		return "malformed error packet"
	}
	code := binary.LittleEndian.Uint16(p[1:3])
	msg := p[3:]
	state := ""
	if len(msg) >= 6 && msg[0] == '#' {
		state, msg = " ("+string(msg[1:6])+")", msg[6:]
	}
	return fmt.Sprintf("error %d%s: %s", code, state, quote(string(msg)))
}
