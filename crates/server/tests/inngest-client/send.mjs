// Sends FORGEAI_EVENTS (one event or a list, as JSON) to the forgeai server at FORGEAI_URL
// with the official Inngest SDK, the event key being a forgeai API token (FORGEAI_EVENT_KEY).
// Prints one JSON line: {"ids": [...]} or {"error": "..."} (and then exits non-zero).
import { Inngest } from "inngest";

const { FORGEAI_URL, FORGEAI_EVENT_KEY, FORGEAI_EVENTS } = process.env;

const inngest = new Inngest({
  id: "forgeai-test",
  eventKey: FORGEAI_EVENT_KEY,
  // The base URL of the event API (and of the Inngest API, unused here).
  baseUrl: FORGEAI_URL,
  // Cloud mode: send to baseUrl with the event key, never look for a dev server.
  isDev: false,
  logger: { info() {}, warn() {}, error() {}, debug() {} },
});

try {
  const { ids } = await inngest.send(JSON.parse(FORGEAI_EVENTS));
  console.log(JSON.stringify({ ids }));
} catch (error) {
  console.log(JSON.stringify({ error: String(error?.message ?? error) }));
  process.exitCode = 1;
}
