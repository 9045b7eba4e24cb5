#!/usr/bin/env bash
# Make sure a headless browser and its WebDriver exist: the status page's test
# (tests/integration/test_status_page.py) drives Debian's chromium through chromedriver.
exec bash "$(dirname "$0")/ensure-packages.sh" chromium=chromium chromedriver=chromium-driver
