"""Screenshot a Superset dashboard in headless Chromium once every chart is drawn; print what the page showed.

Run by Superset's venv, which has selenium (a Superset dependency) and Pillow, with Debian's chromium and
chromium-driver (no driver download): ``<superset venv>/bin/python -I screenshot.py URL SLUG USER OUT.png``
with the password in ``SUPERSET_PASSWORD``. It logs in through the form as a person does, opens the dashboard
standalone (no menu bar), waits until each chart holds an ECharts instance (or, a table chart, a table with
rows), no spinner is left and the canvases stop changing (the entry animation is over), and prints one JSON
object: the chart and drawn-chart counts, the texts of error or empty-state elements, and the number of
colours in the image (a blank page has a handful).
"""

from __future__ import annotations

import json
import os
import sys
import time

from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

CHARTS = ".dashboard-chart"
# A chart is drawn when it holds an ECharts instance, or (a table chart) a table with rows.
COUNT_DRAWN = (
    "return [...document.querySelectorAll('.dashboard-chart')]"
    ".filter(c => c.querySelector('[_echarts_instance_], table tbody tr')).length"
)
LOADING = ".dashboard-chart .loading, [data-test=loading-indicator]"
# A chart error is an alert; an empty result is Superset's empty state ("No results were returned ...").
PROBLEMS = ".dashboard-chart [role=alert], .dashboard-chart .ant-empty, .dashboard-chart [data-test=chart-error]"
# What the charts' canvases show, as a short signature: equal on two polls in a row once ECharts' entry
# animation (~1 s) has ended.
CANVAS_SIGNATURE = (
    "return [...document.querySelectorAll('.dashboard-chart canvas')].map(c => {"
    " const d = c.toDataURL(); let h = 0;"
    " for (let i = 0; i < d.length; i += 7) h = (h * 31 + d.charCodeAt(i)) | 0;"
    " return d.length + ':' + h; }).join(',')"
)


def main() -> None:
    base, slug, user, out = sys.argv[1:5]
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1500",
        "--hide-scrollbars",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        # No host but this one resolves: the page must render without the internet.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")), options=options)
    started = time.monotonic()
    try:
        wait = WebDriverWait(driver, 90, poll_frequency=0.25)
        driver.get(f"{base}/login/")
        wait.until(lambda d: d.find_elements(By.ID, "username"))
        driver.find_element(By.ID, "username").send_keys(user)
        driver.find_element(By.ID, "password").send_keys(os.environ["SUPERSET_PASSWORD"])
        driver.find_element(By.CSS_SELECTOR, "[data-test=login-button]").click()
        wait.until(lambda d: "/login" not in d.current_url)

        driver.get(f"{base}/superset/dashboard/{slug}/?standalone=1")

        def settled(d: webdriver.Chrome) -> bool:
            charts = len(d.find_elements(By.CSS_SELECTOR, CHARTS))
            done = int(d.execute_script(COUNT_DRAWN)) + len(d.find_elements(By.CSS_SELECTOR, PROBLEMS))
            return charts > 0 and done >= charts and not d.find_elements(By.CSS_SELECTOR, LOADING)

        wait.until(settled)
        seen: list[str] = []

        def still(d: webdriver.Chrome) -> bool:
            seen.append(str(d.execute_script(CANVAS_SIGNATURE)))
            return len(seen) > 1 and seen[-1] == seen[-2]

        wait.until(still)
        driver.save_screenshot(out)
        problems = [e.text.strip()[:200] for e in driver.find_elements(By.CSS_SELECTOR, PROBLEMS)]
        report = {
            "charts": len(driver.find_elements(By.CSS_SELECTOR, CHARTS)),
            "drawn": int(driver.execute_script(COUNT_DRAWN)),
            "problems": problems,
            "no_results_text": "No results" in driver.find_element(By.TAG_NAME, "body").text,
            "titles": [e.text for e in driver.find_elements(By.CSS_SELECTOR, "[data-test=editable-title]")],
            "seconds": round(time.monotonic() - started, 1),
        }
    finally:
        driver.quit()
    image = Image.open(out).convert("RGB")
    report["colours"] = len(image.getcolors(maxcolors=1 << 20) or [])
    report["size"] = list(image.size)
    # A palette PNG is a third of the size and looks the same for flat charts: fit for the repo.
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
