package meshgate.interop;

import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.time.format.DateTimeParseException;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

/** The meshgate wire format, from docs/wire-format.md alone: headers, signed bytes, signatures. */
final class Wire {
    static final String DOMAIN = "meshgate-sig-v4";
    /** The signed fields, in order; "topic" and "value" are the record's, the rest headers. */
    static final List<String> SIGNED = List.of("topic", "ce_specversion", "ce_id", "ce_source",
            "ce_type", "ce_time", "mesh_kind", "mesh_correlation_id", "mesh_reply_to",
            "mesh_deadline", "content-type", "mesh_principal", "mesh_principal_sig", "value");
    static final List<String> REQUIRED = List.of("ce_specversion", "ce_id", "ce_source",
            "ce_type", "ce_time", "mesh_kind");
    /** The headers the format names: each may appear once. */
    static final List<String> KNOWN = List.of("ce_specversion", "ce_id", "ce_source", "ce_type",
            "ce_time", "mesh_kind", "mesh_correlation_id", "mesh_reply_to", "mesh_deadline",
            "content-type", "mesh_principal", "mesh_principal_sig", "mesh_attempt", "mesh_sig",
            "traceparent", "tracestate");
    static final Pattern KEY_ID = Pattern.compile("[A-Za-z0-9._-]{1,128}");
    private static final DateTimeFormatter TIME =
            DateTimeFormatter.ofPattern("uuuu-MM-dd'T'HH:mm:ss.SSS'Z'").withZone(ZoneOffset.UTC);

    private Wire() {}

    /** A refusal, with the reason code the Python receivers quarantine with. */
    static final class Refused extends Exception {
        private static final long serialVersionUID = 1L;
        final String code;

        Refused(String code, String message) {
            super(message);
            this.code = code;
        }
    }

    /** One Kafka record as the mesh sees it: its headers in order and its value. */
    record Message(List<Map.Entry<String, byte[]>> headers, byte[] value) {
        byte[] header(String name) throws Refused {
            byte[] found = null;
            for (Map.Entry<String, byte[]> header : headers) {
                if (header.getKey().equals(name)) {
                    if (found != null) {
                        throw new Refused("bad_envelope", "header " + name + " appears twice");
                    }
                    found = header.getValue();
                }
            }
            return found;
        }

        /** A header as strict UTF-8 of at most 4096 bytes; null when absent. */
        String text(String name) throws Refused {
            byte[] raw = header(name);
            if (raw != null && raw.length > 4096) {
                throw new Refused("bad_envelope", "header " + name + " is over 4096 bytes");
            }
            try {
                return raw == null ? null
                        : StandardCharsets.UTF_8.newDecoder().decode(ByteBuffer.wrap(raw)).toString();
            } catch (CharacterCodingException e) {
                throw new Refused("bad_envelope", "header " + name + " is not UTF-8");
            }
        }

        /** A copy with the header {@code name} set to {@code raw} (added when absent). */
        Message with(String name, byte[] raw) {
            List<Map.Entry<String, byte[]>> copy = new ArrayList<>();
            headers.stream().filter(h -> !h.getKey().equals(name)).forEach(copy::add);
            copy.add(Map.entry(name, raw));
            return new Message(copy, value);
        }
    }

    /** The bytes a message signature covers, for the record as sent to {@code topic}. */
    static byte[] signedBytes(Message message, String topic) throws Refused {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        lengthPrefixed(out, utf8(DOMAIN));
        for (String field : SIGNED) {
            lengthPrefixed(out, utf8(field));
            byte[] content = field.equals("topic") ? utf8(topic)
                    : field.equals("value") ? message.value() : message.header(field);
            if (content == null && field.equals("content-type")) {
                content = utf8("application/json"); // absent: signed as the default
            }
            out.write(content == null ? 0 : 1);
            if (content != null) {
                lengthPrefixed(out, content);
            }
        }
        return out.toByteArray();
    }

    /** The bytes an edge's principal assertion covers. */
    static byte[] assertionBytes(byte[] principal, long expiresMs) {
        return fields(utf8("meshgate-principal-v1"), principal, utf8(Long.toString(expiresMs)));
    }

    /** The bytes an operator's replay countersignature covers. */
    static byte[] countersignBytes(Message message, String topic, String replayId, long timeMs)
            throws Refused {
        String signature = message.text("mesh_sig");
        return fields(utf8("meshgate-replay-v1"), utf8(topic), utf8(replayId),
                utf8(Long.toString(timeMs)), signedBytes(message, topic),
                utf8(signature == null ? "" : signature));
    }

    /** {@code <algorithm>:<key_id>[:<expires_ms>]:<base64url>} (expiresMs -1 when absent). */
    record Signature(String algorithm, String keyId, long expiresMs, byte[] bytes) {
        String encode() {
            return algorithm + ":" + keyId + ":" + encodeB64url(bytes);
        }
    }

    /** Parses a signature ({@code parts} 3) or a principal assertion ({@code parts} 4). */
    static Signature parseSignature(String text, int parts, String code) throws Refused {
        if (text == null) {
            throw new Refused("missing_signature", "the message has no signature");
        }
        String[] p = text.split(":", -1);
        if (p.length != parts || !(p[0].equals(Keyring.ED25519) || p[0].equals(Keyring.HMAC_SHA256))
                || !KEY_ID.matcher(p[1]).matches()
                || (parts == 4 && !p[2].matches("0|[1-9][0-9]{0,15}"))) {
            throw new Refused(code, "not '<algorithm>:<key_id>:<base64url>' as the format says");
        }
        byte[] raw;
        try {
            raw = decodeB64url(p[parts - 1]);
        } catch (IllegalArgumentException e) {
            throw new Refused(code, "the signature is not canonical base64url");
        }
        if (raw.length != (p[0].equals(Keyring.ED25519) ? 64 : 32)) {
            throw new Refused(code, "a " + p[0] + " signature of " + raw.length + " bytes");
        }
        return new Signature(p[0], p[1], parts == 4 ? Long.parseLong(p[2]) : -1, raw);
    }

    /** {@code ce_time}: RFC 3339 in its one spelling, YYYY-MM-DDTHH:MM:SS.mmmZ. */
    static String formatTime(long epochMs) {
        return TIME.format(Instant.ofEpochMilli(epochMs));
    }

    static long parseTime(String text) throws Refused {
        try {
            long ms = Instant.parse(text).toEpochMilli();
            if (text.length() == 24 && formatTime(ms).equals(text)) {
                return ms;
            }
        } catch (DateTimeParseException e) {
            // refused below
        }
        throw new Refused("bad_envelope", "ce_time must read YYYY-MM-DDTHH:MM:SS.mmmZ");
    }

    static String encodeB64url(byte[] raw) {
        return Base64.getUrlEncoder().withoutPadding().encodeToString(raw);
    }

    /** Unpadded base64url, canonical only (one text per byte string). */
    static byte[] decodeB64url(String text) {
        byte[] raw = Base64.getUrlDecoder().decode(text);
        if (!encodeB64url(raw).equals(text)) {
            throw new IllegalArgumentException("not canonical unpadded base64url");
        }
        return raw;
    }

    static byte[] utf8(String text) {
        return text.getBytes(StandardCharsets.UTF_8);
    }

    private static byte[] fields(byte[]... fields) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        for (byte[] field : fields) {
            lengthPrefixed(out, field);
        }
        return out.toByteArray();
    }

    private static void lengthPrefixed(ByteArrayOutputStream out, byte[] data) {
        out.writeBytes(ByteBuffer.allocate(8).putLong(data.length).array());
        out.writeBytes(data);
    }
}
