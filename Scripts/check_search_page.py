#!/usr/bin/env python3
"""The search page of `clip serve`, driven in headless Chromium (Debian's chromium and chromium-driver, selenium
from PyPI): types a query, waits for the hits, checks the best one and that its thumbnail loaded, clicks "more like
this" on another hit and checks that image comes first, and keeps a screenshot.

  python Scripts/check_search_page.py --url http://127.0.0.1:8080 --expect blue-star.png --screenshot page.png
"""
import argparse
import os
import sys

os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager fetch a driver: Debian's is used

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", required=True)
    p.add_argument("--query", default="a blue star")
    p.add_argument("--expect", default="blue-star.png", help="the file the query must find first")
    p.add_argument("--screenshot", required=True)
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--driver", default="/usr/bin/chromedriver")
    args = p.parse_args()

    options = webdriver.ChromeOptions()
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,800"]:
        options.add_argument(flag)
    options.binary_location = args.chromium
    driver = webdriver.Chrome(service=Service(args.driver), options=options)
    wait = WebDriverWait(driver, 30)
    try:
        driver.get(args.url)
        box = driver.find_element(By.ID, "query")
        box.send_keys(args.query)
        box.send_keys(Keys.ENTER)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".hit") and "hits for" in d.find_element(By.ID, "status").text)
        hits = driver.find_elements(By.CSS_SELECTOR, ".hit")
        paths = [h.find_element(By.CSS_SELECTOR, ".path").get_attribute("title") for h in hits]
        print(f"query {args.query!r}: {len(hits)} hits, first {paths[0]!r}; status: {driver.find_element(By.ID, 'status').text}")
        if not paths[0].endswith(args.expect):
            sys.exit(f"the best hit for {args.query!r} is {paths[0]!r}, not {args.expect!r}")
        if "q=" not in driver.current_url:
            sys.exit(f"the query is not in the address: {driver.current_url}")
        wait.until(lambda d: d.execute_script(
            "return Array.from(document.querySelectorAll('.hit img')).every(i => i.complete && i.naturalWidth > 0)"))
        driver.save_screenshot(args.screenshot)
        if len(hits) > 1:
            other = paths[1]
            hits[1].find_element(By.CSS_SELECTOR, "button.like").click()
            wait.until(lambda d: "like=" in d.current_url and "like #" in d.find_element(By.ID, "status").text)
            first = driver.find_elements(By.CSS_SELECTOR, ".hit .path")[0].get_attribute("title")
            print(f"more like {other!r}: first {first!r}")
            if first != other:
                sys.exit(f"'more like this' on {other!r} put {first!r} first")
            driver.back()
            wait.until(lambda d: "like=" not in d.current_url and
                       d.find_elements(By.CSS_SELECTOR, ".hit .path")[0].get_attribute("title") == paths[0])
        print(f"screenshot: {args.screenshot}")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
