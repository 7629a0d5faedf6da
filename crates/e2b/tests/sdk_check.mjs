// Runs E2B's official JavaScript SDK against the E2B given by the E2B_* variables (the mock, in
// the tests) and prints what it saw as JSON: the same checks as sdk_check.py.
import { CommandExitError, Sandbox, TimeoutError } from 'e2b'

const seen = {}
const sandbox = await Sandbox.create('static', { timeoutMs: 120_000, metadata: { projectId: 'sdk-check' } })
seen.id = sandbox.sandboxId

const streamed = []
const result = await sandbox.commands.run("echo hello; echo oops >&2; printf 'h\\xc3\\xa9!'", {
  onStdout: (data) => streamed.push(data),
})
seen.stdout = result.stdout
seen.stderr = result.stderr
seen.exit_code = result.exitCode
seen.streamed = streamed.join('')

try {
  await sandbox.commands.run('exit 3')
} catch (error) {
  if (error instanceof CommandExitError) seen.failed_exit_code = error.exitCode
  else throw error
}

try {
  await sandbox.commands.run('sleep 20', { timeoutMs: 1000 })
  seen.timeout = 'none'
} catch (error) {
  if (error instanceof TimeoutError) seen.timeout = 'raised'
  else throw error
}

const info = await sandbox.files.write('/home/user/project/sdk/hello.txt', 'written by the SDK')
seen.written_path = info.path
seen.read = await sandbox.files.read('/home/user/project/sdk/hello.txt')
seen.listed = (await sandbox.files.list('/home/user/project/sdk')).map((entry) => entry.name).sort()
seen.exists = await sandbox.files.exists('/home/user/project/sdk/hello.txt')
seen.host = sandbox.getHost(3000)

const listed = await Sandbox.list({ query: { metadata: { projectId: 'sdk-check' } } }).nextItems()
seen.listed_ids = listed.map((s) => s.sandboxId)
await sandbox.setTimeout(60_000)
seen.killed = await Sandbox.kill(sandbox.sandboxId)
seen.killed_again = await Sandbox.kill(sandbox.sandboxId)

process.stdout.write(JSON.stringify(seen))
