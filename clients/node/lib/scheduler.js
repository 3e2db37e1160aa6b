/**
 * The scheduler's TaskService from Node: the contract loaded at run time from the .proto
 * files with @grpc/proto-loader (no generated code to keep in step), a channel with TLS, and
 * every call carrying the caller's bearer token and client name, a deadline, and promises
 * instead of callbacks.
 */

import { accessSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";

import * as grpc from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";

import { LOADER_OPTIONS, ProtoJson } from "./protojson.js";

/** The repository's proto/ folder, which holds orchestrator/v1/*.proto. */
export const DEFAULT_PROTO_ROOT = fileURLToPath(new URL("../../../proto", import.meta.url));

/** The service's .proto file, relative to the proto root; it imports the others. */
const CONTRACT = "orchestrator/v1/task_service.proto";

/** Where the scheduler listens unless told otherwise (as for taskctl and the workers). */
export const DEFAULT_SCHEDULER = "127.0.0.1:50051";

export const TERMINAL_STATES = new Set([
  "TASK_STATE_SUCCEEDED",
  "TASK_STATE_FAILED",
  "TASK_STATE_CANCELLED",
]);

// The scheduler's own message limit (orchestrator_client.protocol.MAX_MESSAGE_BYTES): a task
// with a large payload and result is bigger than gRPC's default 4 MiB.
const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

const CHANNEL_OPTIONS = {
  "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
  "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
  // Ping every 10 s (the scheduler allows no more often than every 5 s), so that a long
  // watch over a silently dead link fails instead of waiting out its whole deadline.
  "grpc.keepalive_time_ms": 10_000,
  "grpc.keepalive_timeout_ms": 5_000,
  "grpc.keepalive_permit_without_calls": 1,
};

/** The status code's name, e.g. "INVALID_ARGUMENT" for 3. */
export function statusName(code) {
  return grpc.status[code] ?? `status ${code}`;
}

/** An error the scheduler did not send as a status but the client concluded (exit code 3). */
export class WatchEnded extends Error {
  constructor(message, code = grpc.status.UNKNOWN) {
    super(message);
    this.code = code;
    this.details = message;
  }
}

/**
 * @typedef {object} TlsOptions
 * @property {string} [caFile] PEM of the CA that signed the scheduler's certificate
 *   (default: Node's trusted roots)
 * @property {string} [certFile] this client's certificate, for mutual TLS
 * @property {string} [keyFile] its private key
 * @property {string} [serverName] the name to expect in the scheduler's certificate instead of
 *   the address's host
 */

/**
 * A TaskService client; `close()` it at the end.
 *
 * Without `tls` the channel is plaintext and the token travels in the clear: fine on
 * loopback, which is where the scheduler listens without TLS unless told `--insecure`.
 */
export class TaskService {
  /**
   * @param {object} options
   * @param {string} options.address host:port of the scheduler
   * @param {string} [options.protoRoot] folder holding orchestrator/v1/*.proto
   * @param {string} [options.token] bearer token (the scheduler's --auth-tokens)
   * @param {string} [options.clientId] who creates tasks, when the scheduler has no tokens
   * @param {TlsOptions} [options.tls]
   */
  constructor({ address, protoRoot = DEFAULT_PROTO_ROOT, token, clientId, tls }) {
    // Fails (ENOENT, naming the path) before proto-loader would, with a vaguer message.
    accessSync(join(protoRoot, CONTRACT));
    // google/protobuf/*.proto need no include dir: proto-loader takes its own bundled copies.
    const definition = loadSync(CONTRACT, {
      ...LOADER_OPTIONS,
      includeDirs: [protoRoot],
    });
    const { TaskService: Stub } = grpc.loadPackageDefinition(definition).orchestrator.v1;
    this.json = new ProtoJson(definition);
    this.metadata = new grpc.Metadata();
    if (token) this.metadata.set("authorization", `Bearer ${token}`);
    if (clientId) this.metadata.set("orchestrator-client", clientId);
    const options = { ...CHANNEL_OPTIONS };
    if (tls?.serverName) options["grpc.ssl_target_name_override"] = tls.serverName;
    this.stub = new Stub(address, channelCredentials(tls), options);
  }

  close() {
    this.stub.close();
  }

  /** CreateTask: the task as committed (PENDING or SCHEDULED). */
  createTask(request, { timeoutMs }) {
    return this.#unary("CreateTask", request, timeoutMs);
  }

  /** GetTask: the task now, with its attempt history. */
  getTask(id, { timeoutMs }) {
    return this.#unary("GetTask", { id }, timeoutMs);
  }

  /**
   * The task once it is SUCCEEDED, FAILED or CANCELLED, from a WatchTask stream (no polling).
   *
   * A watch broken by UNAVAILABLE (a scheduler restart, a dropped link) is opened again,
   * with backoff, until `deadline`: a watch starts with the task as it is now, so nothing
   * is missed. A deleted task ends the wait with NOT_FOUND.
   */
  async waitForTask(id, { deadline }) {
    for (let retry = 0; ; retry += 1) {
      try {
        const task = await this.#watchUntilTerminal(id, deadline);
        if (task) return task;
        // The stream ended without a terminal state; the task may have finished meanwhile.
        const now = await this.getTask(id, { timeoutMs: deadline - Date.now() });
        if (TERMINAL_STATES.has(now.state)) return now;
        throw new WatchEnded(`the watch of task ${id} ended while it was ${now.state}`);
      } catch (error) {
        const pause = Math.min(100 * 2 ** retry, 5_000);
        if (error.code !== grpc.status.UNAVAILABLE || Date.now() + pause >= deadline) throw error;
        await sleep(pause);
      }
    }
  }

  /** The terminal task, or undefined when the stream ends before one. */
  async #watchUntilTerminal(id, deadline) {
    // The default view for WatchTask is FULL: payload, result and attempt history.
    const call = this.stub.WatchTask({ id }, this.metadata, { deadline });
    try {
      for await (const event of call) {
        if (event.type === "TASK_EVENT_TYPE_DELETED") {
          throw new WatchEnded(`task ${id} was deleted`, grpc.status.NOT_FOUND);
        }
        if (TERMINAL_STATES.has(event.task?.state)) return event.task;
      }
      return undefined;
    } finally {
      // Leaving early (a terminal event, a deletion) must end the call too. Its CANCELLED
      // status then arrives as an "error" event nobody reads any more: swallow that one.
      call.on("error", () => {});
      call.cancel(); // no-op once the stream has ended by itself
    }
  }

  #unary(method, request, timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    return new Promise((resolve, reject) => {
      this.stub[method](request, this.metadata, { deadline }, (error, response) =>
        error ? reject(error) : resolve(response),
      );
    });
  }
}

function channelCredentials(tls) {
  if (!tls) return grpc.credentials.createInsecure();
  const read = (path) => (path ? readFileSync(path) : null);
  return grpc.credentials.createSsl(read(tls.caFile), read(tls.keyFile), read(tls.certFile));
}
