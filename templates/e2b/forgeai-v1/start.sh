#!/bin/bash
# Start command of the forgeai-v1 E2B template: hands the project to the sandbox user and runs
# the dev server as that user, its output in /home/user/.forgeai-dev.log.
chown -R user:user /home/user/project
cd /home/user/project
exec su user -s /bin/bash -c "NEXT_TELEMETRY_DISABLED=1 PORT=3000 exec node_modules/.bin/next dev --turbopack -H 0.0.0.0 -p 3000 >> /home/user/.forgeai-dev.log 2>&1"
