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

/**
 * The meshgate wire format, written from docs/wire-format.md alone: the record headers, the
 * bytes a signature covers, and the signature and principal-assertion headers.
 */
final class Wire {
    static final String DOMAIN = "meshgate-sig-v4";
    static final String ASSERTION_DOMAIN = "meshgate-principal-v1";
    static final String REPLAY_DOMAIN = "meshgate-replay-v1";
    static final String SIGNATURE = "mesh_sig";
    /** The signed fields, in order; "topic" and "value" are the record's, the rest headers. */
    static final List<String> SIGNED = List.of("topic", "ce_specversion", "ce_id", "ce_source", "ce_type",
            "ce_time", "mesh_kind", "mesh_correlation_id", "mesh_reply_to",
            "mesh_deadline", "content-type", "mesh_principal", "mesh_principal_sig", "value");
    static final List<String> REQUIRED = List.of("ce_specversion", "ce_id", "ce_source",
            "ce_type", "ce_time", "mesh_kind");
    static final Pattern KEY_ID = Pattern.compile("[A-Za-z0-9._-]{1,128}");
    private static final Pattern B64URL = Pattern.compile("[A-Za-z0-9_-]*");

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
            if (raw == null) {
                return null;
            }
            if (raw.length > 4096) {
                throw new Refused("bad_envelope", "header " + name + " is over 4096 bytes");
            }
            try {
                return StandardCharsets.UTF_8.newDecoder().decode(ByteBuffer.wrap(raw)).toString();
            } catch (CharacterCodingException e) {
                throw new Refused("bad_envelope", "header " + name + " is not UTF-8");
            }
        }

        /** A copy with the header {@code name} set to {@code raw} (added when absent). */
        Message with(String name, byte[] raw) {
            List<Map.Entry<String, byte[]>> copy = new ArrayList<>();
            boolean replaced = false;
            for (Map.Entry<String, byte[]> header : headers) {
                if (header.getKey().equals(name)) {
                    copy.add(Map.entry(name, raw));
                    replaced = true;
                } else {
                    copy.add(header);
                }
            }
            if (!replaced) {
                copy.add(Map.entry(name, raw));
            }
            return new Message(copy, value);
        }
    }

    /** The bytes a message signature covers, for the record as sent to {@code topic}. */
    static byte[] signedBytes(Message message, String topic) throws Refused {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        lengthPrefixed(out, DOMAIN.getBytes(StandardCharsets.UTF_8));
        for (String field : SIGNED) {
            lengthPrefixed(out, field.getBytes(StandardCharsets.UTF_8));
            byte[] content = switch (field) {
                case "topic" -> topic.getBytes(StandardCharsets.UTF_8);
                case "value" -> message.value() == null ? new byte[0] : message.value();
                default -> message.header(field);
            };
            if (content == null) {
                out.write(0);
            } else {
                out.write(1);
                lengthPrefixed(out, content);
            }
        }
        return out.toByteArray();
    }

    /** The bytes a principal assertion covers. */
    static byte[] assertionBytes(byte[] principal, long expiresMs) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        lengthPrefixed(out, ASSERTION_DOMAIN.getBytes(StandardCharsets.UTF_8));
        lengthPrefixed(out, principal);
        lengthPrefixed(out, Long.toString(expiresMs).getBytes(StandardCharsets.UTF_8));
        return out.toByteArray();
    }

    /** The bytes an operator's replay countersignature covers. */
    static byte[] countersignBytes(Message message, String topic, String replayId, long timeMs)
            throws Refused {
        String signature = message.text(SIGNATURE);
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        for (byte[] field : new byte[][] {REPLAY_DOMAIN.getBytes(StandardCharsets.UTF_8),
                topic.getBytes(StandardCharsets.UTF_8), replayId.getBytes(StandardCharsets.UTF_8),
                Long.toString(timeMs).getBytes(StandardCharsets.UTF_8),
                signedBytes(message, topic),
                (signature == null ? "" : signature).getBytes(StandardCharsets.UTF_8)}) {
            lengthPrefixed(out, field);
        }
        return out.toByteArray();
    }

    /** A parsed {@code <algorithm>:<key_id>:<base64url>} signature header. */
    record Signature(String algorithm, String keyId, byte[] bytes) {
        String encode() {
            return algorithm + ":" + keyId + ":" + encodeB64url(bytes);
        }
    }

    static Signature parseSignature(String text) throws Refused {
        if (text == null) {
            throw new Refused("missing_signature", "the message has no signature");
        }
        String[] parts = text.split(":", -1);
        if (parts.length != 3) {
            throw new Refused("malformed_signature", "a signature reads '<alg>:<key_id>:<b64url>'");
        }
        return new Signature(algorithm(parts[0], "malformed_signature"),
                keyId(parts[1], "malformed_signature"),
                signatureBytes(parts[0], parts[2], "malformed_signature"));
    }

    /** A parsed {@code <algorithm>:<key_id>:<expires_ms>:<base64url>} assertion. */
    record Assertion(String algorithm, String keyId, long expiresMs, byte[] bytes) {}

    static Assertion parseAssertion(String text) throws Refused {
        String code = "bad_principal_assertion";
        String[] parts = text.split(":", -1);
        if (parts.length != 4 || !parts[2].matches("0|[1-9][0-9]{0,15}")) {
            throw new Refused(code, "an assertion reads '<alg>:<key_id>:<expires_ms>:<b64url>'");
        }
        return new Assertion(algorithm(parts[0], code), keyId(parts[1], code),
                Long.parseLong(parts[2]), signatureBytes(parts[0], parts[3], code));
    }

    private static String algorithm(String text, String code) throws Refused {
        if (!text.equals(Keyring.ED25519) && !text.equals(Keyring.HMAC_SHA256)) {
            throw new Refused(code, "unknown algorithm " + text);
        }
        return text;
    }

    private static String keyId(String text, String code) throws Refused {
        if (!KEY_ID.matcher(text).matches()) {
            throw new Refused(code, "not a valid key id");
        }
        return text;
    }

    private static byte[] signatureBytes(String algorithm, String text, String code)
            throws Refused {
        byte[] raw;
        try {
            raw = decodeB64url(text);
        } catch (IllegalArgumentException e) {
            throw new Refused(code, "the signature is not canonical base64url");
        }
        int expected = algorithm.equals(Keyring.ED25519) ? 64 : 32;
        if (raw.length != expected) {
            throw new Refused(code, algorithm + " signatures are " + expected + " bytes");
        }
        return raw;
    }

    private static final DateTimeFormatter TIME =
            DateTimeFormatter.ofPattern("uuuu-MM-dd'T'HH:mm:ss.SSS'Z'").withZone(ZoneOffset.UTC);
    private static final Pattern TIME_SHAPE = Pattern.compile(
            "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z");

    /** {@code ce_time}: RFC 3339 in its one fixed spelling, YYYY-MM-DDTHH:MM:SS.mmmZ. */
    static String formatTime(long epochMs) {
        return TIME.format(Instant.ofEpochMilli(epochMs));
    }

    static long parseTime(String text) throws Refused {
        try {
            long ms = Instant.parse(text).toEpochMilli();
            if (TIME_SHAPE.matcher(text).matches() && formatTime(ms).equals(text)) {
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
        if (!B64URL.matcher(text).matches() || text.length() % 4 == 1) {
            throw new IllegalArgumentException("not unpadded base64url");
        }
        byte[] raw = Base64.getUrlDecoder().decode(text);
        if (!encodeB64url(raw).equals(text)) {
            throw new IllegalArgumentException("non-canonical base64url");
        }
        return raw;
    }

    private static void lengthPrefixed(ByteArrayOutputStream out, byte[] data) {
        out.writeBytes(ByteBuffer.allocate(8).putLong(data.length).array());
        out.writeBytes(data);
    }
}
