package recsys.ingest;

import com.fasterxml.jackson.core.JsonEncoding;
import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonGenerator;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.core.StreamReadFeature;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.api.java.UDF1;

/**
 * One pass over a raw event line: whether it is exactly one strict JSON object, and the JSON type
 * and text of each field of the raw contract (ingest/schema.py RAW_EVENT_FIELDS, same order).
 *
 * <p>It stands in for three Spark expressions of ingest/classify.py that each parse the line:
 * try_parse_json (strict JSON, duplicate keys rejected at every depth), schema_of_variant of each
 * field, and from_json for the fields' text. It uses Spark's own Jackson with the same rules: no
 * comments, single quotes, NaN, leading zeros or unquoted control characters, a duplicate key at
 * any depth is an error, and nothing but whitespace may follow the object. A string field's text
 * is its unescaped value; an object's text is what from_json gives (Jackson's copy of the
 * structure: compact, keys in the line's order).
 *
 * <p>Returns a row (whole_object, type_&lt;field&gt;..., text_&lt;field&gt;...), types STRING, OBJECT,
 * VOID (JSON null), ARRAY, NUMBER or BOOLEAN, null when the field is absent; all but whole_object
 * null when the line is not one strict JSON object. Null for a null line.
 */
public final class ParseEventLine implements UDF1<String, Row> {
    private static final long serialVersionUID = 1L;
    static final String[] FIELDS = {
        "event_id", "event_time", "user_id", "session_id", "item_id", "event_type", "extra"};
    private static final JsonFactory FACTORY =
        JsonFactory.builder().enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION).build();

    @Override
    public Row call(String line) throws IOException {
        if (line == null) {
            return null;
        }
        int n = FIELDS.length;
        if (line.indexOf("\\u") >= 0 && hasLoneSurrogateEscape(line)) {
            return RowFactory.create(notAnObject(n));
        }
        Object[] out = new Object[1 + 2 * n];
        out[0] = Boolean.FALSE;
        try (JsonParser parser = FACTORY.createParser(line)) {
            if (parser.nextToken() != JsonToken.START_OBJECT) {
                return RowFactory.create(out);
            }
            JsonToken token;
            while ((token = parser.nextToken()) == JsonToken.FIELD_NAME) {
                int field = fieldIndex(parser.currentName());
                JsonToken value = parser.nextToken();
                if (field < 0) {
                    parser.skipChildren();  // still tokenized: malformed or duplicate keys inside fail
                    continue;
                }
                out[1 + field] = typeName(value);
                if (value == JsonToken.VALUE_STRING) {
                    out[1 + n + field] = parser.getText();
                } else if (value == JsonToken.START_OBJECT) {
                    out[1 + n + field] = structureText(parser);
                } else {
                    parser.skipChildren();
                }
            }
            if (token != JsonToken.END_OBJECT || parser.nextToken() != null) {
                return RowFactory.create(notAnObject(n));
            }
            out[0] = Boolean.TRUE;
            return RowFactory.create(out);
        } catch (JsonProcessingException malformed) {
            return RowFactory.create(notAnObject(n));
        }
    }

    private static Object[] notAnObject(int n) {
        Object[] out = new Object[1 + 2 * n];
        out[0] = Boolean.FALSE;
        return out;
    }

    /**
     * Whether an escape in the line spells half a surrogate pair (a high one not followed by a low
     * one, or a low one alone). Jackson reads it into a string that is not Unicode; Spark's variant
     * parser rejects the line, and so does this function. Outside strings a backslash is a syntax
     * error anyway, so every escape met here is inside a key or a string.
     */
    static boolean hasLoneSurrogateEscape(String line) {
        int length = line.length();
        boolean pendingHigh = false;
        int i = 0;
        while (i < length) {
            char c = line.charAt(i);
            if (c != '\\') {
                if (pendingHigh) {
                    return true;
                }
                i++;
                continue;
            }
            if (i + 1 >= length) {
                return pendingHigh;
            }
            char kind = line.charAt(i + 1);
            if (kind != 'u' || i + 6 > length) {
                if (pendingHigh) {
                    return true;
                }
                i += 2;
                continue;
            }
            int unit;
            try {
                unit = Integer.parseInt(line.substring(i + 2, i + 6), 16);
            } catch (NumberFormatException malformed) {
                return false;  // the parser reports it
            }
            boolean high = unit >= 0xD800 && unit <= 0xDBFF;
            boolean low = unit >= 0xDC00 && unit <= 0xDFFF;
            if (pendingHigh != low) {
                return true;  // a high one not followed by a low one, or a low one alone
            }
            pendingHigh = high;
            i += 6;
        }
        return pendingHigh;
    }

    private static int fieldIndex(String name) {
        for (int i = 0; i < FIELDS.length; i++) {
            if (FIELDS[i].equals(name)) {
                return i;
            }
        }
        return -1;
    }

    private static String typeName(JsonToken token) {
        switch (token) {
            case VALUE_STRING: return "STRING";
            case START_OBJECT: return "OBJECT";
            case START_ARRAY: return "ARRAY";
            case VALUE_NULL: return "VOID";
            case VALUE_NUMBER_INT:
            case VALUE_NUMBER_FLOAT: return "NUMBER";
            default: return "BOOLEAN";
        }
    }

    private static String structureText(JsonParser parser) throws IOException {
        // As Spark's JacksonParser writes a non-string value read into a string column.
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        try (JsonGenerator generator = FACTORY.createGenerator(bytes, JsonEncoding.UTF8)) {
            generator.copyCurrentStructure(parser);
        }
        return new String(bytes.toByteArray(), StandardCharsets.UTF_8);
    }
}
