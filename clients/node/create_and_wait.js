#!/usr/bin/env node
/**
 * Creates one task on a task-orchestrator scheduler, waits for it to end (on a WatchTask
 * stream) and prints the final task as JSON, field names as in the .proto files.
 *
 *   node create_and_wait.js [options] TYPE [PAYLOAD_JSON]
 *   node create_and_wait.js sum2 '{"first": 1, "second": 2}'
 *
 * The exit status says how it went, as taskctl's does, so that scripts can branch on it:
 * 0 the task SUCCEEDED, 1 it ended FAILED or CANCELLED, 2 bad command line (nothing sent),
 * 3 the scheduler answered an error or the wait ran out of time, 4 no scheduler reachable.
 * Errors go to stderr as `error: CODE: message`, CODE being the gRPC status code's name.
 */

import { parseArgs } from "node:util";

import { status } from "@grpc/grpc-js";

import { structFromJson } from "./lib/protojson.js";
import { DEFAULT_SCHEDULER, TaskService, statusName } from "./lib/scheduler.js";

const EXIT = Object.freeze({
  SUCCEEDED: 0,
  UNSUCCESSFUL: 1,
  USAGE: 2,
  RPC_ERROR: 3,
  UNREACHABLE: 4,
});
const CREATE_TIMEOUT_MS = 10_000;

const USAGE = `usage: create_and_wait.js [options] TYPE [PAYLOAD_JSON]

Creates a task of TYPE with the JSON object PAYLOAD_JSON (default {}), waits until it ends,
prints it as JSON. Exit status: 0 SUCCEEDED, 1 FAILED or CANCELLED, 2 usage error,
3 the scheduler answered an error (or --timeout ran out), 4 no scheduler reachable.

options (each also read from the environment variable in brackets):
  --scheduler HOST:PORT    scheduler address [ORCHESTRATOR_SCHEDULER] (default ${DEFAULT_SCHEDULER})
  --token TOKEN            bearer token [ORCHESTRATOR_TOKEN]; the variable is better than the
                           flag, which other users can see in the process list
  --client-id ID           who creates the task, without tokens [ORCHESTRATOR_CLIENT_ID]
  --tls                    TLS with Node's trusted roots [ORCHESTRATOR_TLS]
  --tls-ca PEM             TLS with this CA [ORCHESTRATOR_TLS_CA]
  --tls-cert PEM, --tls-key PEM   this client's certificate, for mutual TLS
                           [ORCHESTRATOR_TLS_CERT, ORCHESTRATOR_TLS_KEY]
  --tls-server-name NAME   name to expect in the scheduler's certificate
                           [ORCHESTRATOR_TLS_SERVER_NAME]
  --timeout SECONDS        give up waiting after this long (default 300)
  --max-attempts N         attempts before the task FAILS (scheduler default 3)
  --priority N             0 to 1000, higher first
  --idempotency-key KEY    a repeated create with this key returns the first task
  --proto-dir DIR          folder holding orchestrator/v1/*.proto
                           (default: the repository's proto/)
  -h, --help`;

const OPTIONS = {
  scheduler: { type: "string", env: "ORCHESTRATOR_SCHEDULER" },
  token: { type: "string", env: "ORCHESTRATOR_TOKEN" },
  "client-id": { type: "string", env: "ORCHESTRATOR_CLIENT_ID" },
  tls: { type: "boolean", env: "ORCHESTRATOR_TLS" },
  "tls-ca": { type: "string", env: "ORCHESTRATOR_TLS_CA" },
  "tls-cert": { type: "string", env: "ORCHESTRATOR_TLS_CERT" },
  "tls-key": { type: "string", env: "ORCHESTRATOR_TLS_KEY" },
  "tls-server-name": { type: "string", env: "ORCHESTRATOR_TLS_SERVER_NAME" },
  timeout: { type: "string" },
  "max-attempts": { type: "string" },
  priority: { type: "string" },
  "idempotency-key": { type: "string" },
  "proto-dir": { type: "string" },
  help: { type: "boolean", short: "h" },
};

/** A command line that cannot be carried out; nothing has been sent. */
class UsageError extends Error {}

const TRUE = new Set(["1", "true", "yes", "on"]);
const FALSE = new Set(["0", "false", "no", "off", ""]);

function parseBool(name, text) {
  const lowered = text.trim().toLowerCase();
  if (TRUE.has(lowered)) return true;
  if (FALSE.has(lowered)) return false;
  throw new UsageError(
    `${name}: expected one of 1, true, yes, on, 0, false, no, off; got "${text}"`,
  );
}

function parseInteger(flag, text) {
  if (!/^-?\d+$/.test(text)) throw new UsageError(`--${flag}: expected an integer, got "${text}"`);
  return Number(text);
}

/** Flags, then ORCHESTRATOR_* variables, then defaults: the settings of one run. */
function parseCommandLine(argv, env) {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError(error.message);
  }
  const { values, positionals } = parsed;
  if (values.help) return { help: true };
  for (const [name, option] of Object.entries(OPTIONS)) {
    if (values[name] !== undefined || !option.env || env[option.env] === undefined) continue;
    values[name] =
      option.type === "boolean" ? parseBool(option.env, env[option.env]) : env[option.env];
  }

  if (positionals.length < 1 || positionals.length > 2) {
    throw new UsageError(
      `expected TYPE and an optional PAYLOAD_JSON, got ${positionals.length} arguments`,
    );
  }
  const [type, payloadText = "{}"] = positionals;
  let payload;
  try {
    payload = JSON.parse(payloadText);
  } catch (error) {
    throw new UsageError(`PAYLOAD_JSON is not JSON: ${error.message}`);
  }
  if (payload === null || typeof payload !== "object" || Array.isArray(payload)) {
    throw new UsageError(`PAYLOAD_JSON must be a JSON object, got ${payloadText}`);
  }

  const timeout = Number(values.timeout ?? "300");
  if (!Number.isFinite(timeout) || timeout <= 0) {
    throw new UsageError(
      `--timeout: expected a positive number of seconds, got "${values.timeout}"`,
    );
  }
  if (Boolean(values["tls-cert"]) !== Boolean(values["tls-key"])) {
    throw new UsageError("--tls-cert and --tls-key go together (a certificate needs its key)");
  }
  const tlsFiles = values["tls-ca"] || values["tls-cert"] || values["tls-server-name"];
  const request = { type, payload: structFromJson(payload) };
  if (values["max-attempts"] !== undefined) {
    request.max_attempts = parseInteger("max-attempts", values["max-attempts"]);
  }
  if (values.priority !== undefined) request.priority = parseInteger("priority", values.priority);
  if (values["idempotency-key"]) request.idempotency_key = values["idempotency-key"];

  return {
    help: false,
    address: values.scheduler || DEFAULT_SCHEDULER,
    token: values.token || undefined,
    clientId: values["client-id"] || undefined,
    tls:
      values.tls || tlsFiles
        ? {
            caFile: values["tls-ca"] || undefined,
            certFile: values["tls-cert"] || undefined,
            keyFile: values["tls-key"] || undefined,
            serverName: values["tls-server-name"] || undefined,
          }
        : undefined,
    protoRoot: values["proto-dir"] || undefined,
    timeoutMs: timeout * 1000,
    request,
  };
}

async function main(argv, env) {
  let settings;
  try {
    settings = parseCommandLine(argv, env);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`error: ${error.message} (--help for usage)`);
    return EXIT.USAGE;
  }
  if (settings.help) {
    console.log(USAGE);
    return EXIT.SUCCEEDED;
  }

  const deadline = Date.now() + settings.timeoutMs;
  let service;
  try {
    service = new TaskService(settings);
  } catch (error) {
    if (typeof error.code !== "string") throw error;
    // A file that cannot be read (a .proto, a PEM): the message names it.
    console.error(`error: ${error.message}`);
    return EXIT.USAGE;
  }
  try {
    const created = await service.createTask(settings.request, {
      timeoutMs: Math.min(CREATE_TIMEOUT_MS, settings.timeoutMs),
    });
    const task = await service.waitForTask(created.id, { deadline });
    console.log(JSON.stringify(service.json.toJson("orchestrator.v1.Task", task), null, 2));
    if (task.state === "TASK_STATE_SUCCEEDED") return EXIT.SUCCEEDED;
    console.error(`task ${task.id} ended ${task.state}${task.error ? `: ${task.error}` : ""}`);
    return EXIT.UNSUCCESSFUL;
  } catch (error) {
    if (typeof error.code !== "number") throw error; // not a gRPC status: a bug, show the stack
    if (error.code === status.UNAVAILABLE) {
      console.error(
        `error: UNAVAILABLE: ${error.details} (is a scheduler listening at ${settings.address}?)`,
      );
      return EXIT.UNREACHABLE;
    }
    console.error(`error: ${statusName(error.code)}: ${error.details}`);
    return EXIT.RPC_ERROR;
  } finally {
    service.close();
  }
}

process.exitCode = await main(process.argv.slice(2), process.env);
