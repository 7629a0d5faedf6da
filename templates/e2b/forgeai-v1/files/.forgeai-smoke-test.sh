# Checks the result: a throwaway `next dev` must render the page.
node_modules/.bin/next dev --turbopack -H 127.0.0.1 -p 3999 > /tmp/next-dev.log 2>&1 &
for i in $(seq 1 180); do
  if curl -sf http://127.0.0.1:3999/ -o /tmp/page.html && grep -q 'Get started' /tmp/page.html; then
    echo "next dev rendered the page after ${i}s"; exit 0
  fi
  sleep 1
done
echo 'next dev did not render the page:' >&2; tail -50 /tmp/next-dev.log >&2; exit 1
