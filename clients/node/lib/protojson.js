/**
 * The proto3 JSON mapping for messages as @grpc/proto-loader decodes them.
 *
 * proto-loader hands out plain objects that mirror the wire format: a google.protobuf.Struct
 * is `{fields: {first: {numberValue: 1}}}`, a Timestamp is `{seconds: "1767225600", nanos: 0}`.
 * People and scripts want the JSON that grpcurl and `taskctl --json` print instead
 * (`{"first": 1}`, `"2026-01-01T00:00:00Z"`). protobufjs has no such mapping for the
 * well-known types, so this module walks a message by its descriptor (which proto-loader
 * keeps beside each type) and converts what the orchestrator API uses: Struct, Value,
 * ListValue, Timestamp, Duration, Empty, maps and repeated fields. Field names stay as in
 * the .proto files, enums are names and int64s are strings, as the loader options below
 * decode them.
 */

/** proto-loader options this module expects (see the module comment). */
export const LOADER_OPTIONS = Object.freeze({
  keepCase: true, // proto field names (`attempt_history`), as grpcurl and taskctl print them
  longs: String, // int64 as decimal strings: JSON numbers lose precision past 2^53
  enums: String, // enum values by name
  bytes: String, // base64
  defaults: false, // unset fields stay out, as in grpcurl's output
  oneofs: false, // no virtual `kind` keys beside oneof members
  json: true, // NaN and Infinity as strings
});

/**
 * A Struct message (for a request) from a plain JSON object.
 *
 * The Value field names are camelCase whatever `keepCase` says: proto-loader always takes
 * google/protobuf/*.proto from the copies bundled with protobufjs, which are written so.
 */
export function structFromJson(object) {
  const fields = {};
  for (const [key, value] of Object.entries(object)) {
    fields[key] = valueFromJson(value);
  }
  return { fields };
}

function valueFromJson(value) {
  if (value === null) return { nullValue: "NULL_VALUE" };
  if (Array.isArray(value)) return { listValue: { values: value.map(valueFromJson) } };
  switch (typeof value) {
    case "number":
      return { numberValue: value };
    case "string":
      return { stringValue: value };
    case "boolean":
      return { boolValue: value };
    case "object":
      return { structValue: structFromJson(value) };
    default:
      throw new TypeError(`${typeof value} has no JSON form`);
  }
}

function structToJson(struct) {
  const object = {};
  for (const [key, value] of Object.entries(struct.fields ?? {})) {
    object[key] = valueToJson(value);
  }
  return object;
}

function valueToJson(value) {
  if (value.numberValue !== undefined) return value.numberValue;
  if (value.stringValue !== undefined) return value.stringValue;
  if (value.boolValue !== undefined) return value.boolValue;
  if (value.structValue !== undefined) return structToJson(value.structValue);
  if (value.listValue !== undefined) return (value.listValue.values ?? []).map(valueToJson);
  return null; // nullValue, or no kind set
}

/** "…s" with 0, 3, 6 or 9 fractional digits, the fewest that keep every nonzero digit. */
function fraction(nanos) {
  if (!nanos) return "";
  let digits = String(nanos).padStart(9, "0");
  while (digits.endsWith("000")) digits = digits.slice(0, -3);
  return `.${digits}`;
}

function timestampToJson({ seconds = "0", nanos = 0 }) {
  const whole = new Date(Number(seconds) * 1000).toISOString().replace(/\.\d{3}Z$/, "");
  return `${whole}${fraction(nanos)}Z`;
}

function durationToJson({ seconds = "0", nanos = 0 }) {
  // Both parts carry the sign (seconds -1, nanos -500000000 is -1.5 s).
  const negative = Number(seconds) < 0 || nanos < 0;
  const whole = String(seconds).replace("-", "");
  return `${negative ? "-" : ""}${whole}${fraction(Math.abs(nanos))}s`;
}

const WELL_KNOWN = {
  "google.protobuf.Struct": structToJson,
  "google.protobuf.Value": valueToJson,
  "google.protobuf.ListValue": (list) => (list.values ?? []).map(valueToJson),
  "google.protobuf.Timestamp": timestampToJson,
  "google.protobuf.Duration": durationToJson,
  "google.protobuf.Empty": () => ({}),
};

/** Converts decoded messages of one loaded contract to their JSON form. */
export class ProtoJson {
  /** @param {object} packageDefinition what proto-loader's `loadSync` returned */
  constructor(packageDefinition) {
    this.definitions = packageDefinition;
  }

  /**
   * @param {string} typeName the message's full name, e.g. "orchestrator.v1.Task"
   * @param {object} message as proto-loader decoded it, with LOADER_OPTIONS
   */
  toJson(typeName, message) {
    const wellKnown = WELL_KNOWN[typeName];
    if (wellKnown) return wellKnown(message);
    const descriptor = this.#descriptor(typeName);
    const json = {};
    for (const field of descriptor.field) {
      const value = message[field.name];
      if (value === undefined || value === null) continue;
      json[field.name] = this.#fieldToJson(typeName, descriptor, field, value);
    }
    return json;
  }

  #fieldToJson(scope, descriptor, field, value) {
    if (field.type !== "TYPE_MESSAGE") return value; // scalars and enums are JSON already
    const entry = descriptor.nestedType.find(
      (nested) => nested.name === field.typeName && nested.options?.mapEntry,
    );
    if (entry) {
      const valueField = entry.field.find((f) => f.name === "value");
      return Object.fromEntries(
        Object.entries(value).map(([key, item]) => [
          key,
          this.#fieldToJson(scope, entry, valueField, item),
        ]),
      );
    }
    const typeName = this.#resolve(scope, field.typeName);
    if (field.label === "LABEL_REPEATED") {
      return value.map((item) => this.toJson(typeName, item));
    }
    return this.toJson(typeName, value);
  }

  #descriptor(typeName) {
    const definition = this.definitions[typeName];
    if (!definition || !("field" in (definition.type ?? {}))) {
      throw new Error(`${typeName} is not a message type of the loaded .proto files`);
    }
    return definition.type;
  }

  /**
   * The full name a field's type name refers to. Descriptors keep names as written in the
   * .proto file (`Attempt`, `google.protobuf.Timestamp`), so they are looked up the way
   * protoc does: from the innermost enclosing scope outwards.
   */
  #resolve(scope, name) {
    if (name.startsWith(".")) return name.slice(1);
    const parts = scope.split(".");
    for (let depth = parts.length; depth >= 0; depth -= 1) {
      const candidate = [...parts.slice(0, depth), name].join(".");
      if (candidate in this.definitions || candidate in WELL_KNOWN) return candidate;
    }
    throw new Error(`type ${name} (used in ${scope}) is not in the loaded .proto files`);
  }
}
