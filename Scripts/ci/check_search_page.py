#!/usr/bin/env python3
"""The search page of `clip serve`, driven in headless Chromium (Debian's chromium and chromium-driver, selenium and
axe-selenium-python from PyPI), as a person uses it:

- the empty state says what is indexed and the query box has the focus;
- a typed query finds the expected file first, its thumbnail loads, the query is in the address;
- the viewer opens on a hit with the full image and its details, the arrow keys move, Esc closes and gives the focus
  back to the grid;
- "more like this" puts that image first and names it (not its id); Back restores the query;
- a photo picked from disk, dropped on the page, or pasted finds itself first;
- axe-core finds no serious or critical accessibility violation;
- at 390 px the grid has two columns; with the system's dark theme the page is dark;
- screenshots at desktop and phone size are kept;
- with --key (a server started with --api-key-file): a wrong key in the cookie is said to be refused and dropped,
  and the right one, percent-encoded as the page stores it, is let in.

  python Scripts/ci/check_search_page.py --url http://127.0.0.1:8080 --expect blue-star.png \
      --image Examples/blue-star.png --screenshot page.png --phone-screenshot phone.png
"""
import argparse
import os
import sys

os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager fetch a driver: Debian's is used

from axe_selenium_python import Axe
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait


def fail(message):
    sys.exit("search page: " + message)


def first_path(driver):
    return driver.find_elements(By.CSS_SELECTOR, ".hit .path")[0].get_attribute("title")


def check_key(driver, wait, url, key):
    """A wrong key is refused out loud and not kept; the right one (with + / = in it) is let in."""
    from urllib.parse import quote
    driver.get(url)
    # Without a key the page asks for one.
    wait.until(lambda d: alert_text(d) is not None)
    print(f"without a key: prompt {alert_text(driver)!r}")
    driver.switch_to.alert.dismiss()
    driver.add_cookie({"name": "clip_api_key", "value": "wrong", "path": "/"})
    driver.get(url)
    wait.until(lambda d: alert_text(d) is not None)
    prompt = alert_text(driver)
    print(f"with a wrong key: prompt {prompt!r}")
    if "refused" not in prompt:
        fail(f"a refused key is not said so: {prompt!r}")
    driver.switch_to.alert.dismiss()
    wait.until(lambda d: "refused" in d.find_element(By.ID, "library").text or "refused" in d.find_element(By.ID, "status").text)
    if any(c["name"] == "clip_api_key" for c in driver.get_cookies()):
        fail("the refused key stays in the cookie")
    driver.add_cookie({"name": "clip_api_key", "value": quote(key, safe=""), "path": "/"})
    driver.get(url)
    wait.until(lambda d: "photo" in d.find_element(By.ID, "library").text)
    print(f"with the right key: {driver.find_element(By.ID, 'library').text}")


def image_url(driver, image):
    """The /files URL of the indexed file named like `image`, from a search for it by name's hits."""
    for link in driver.find_elements(By.CSS_SELECTOR, ".hit"):
        if link.find_element(By.CSS_SELECTOR, ".path").get_attribute("title").endswith("/" + os.path.basename(image)):
            return link.find_element(By.CSS_SELECTOR, "a").get_attribute("href")
    fail(f"{image} is not among the hits to drop it from")


def alert_text(driver):
    try:
        return driver.switch_to.alert.text
    except Exception:
        return None


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True)
    p.add_argument("--query", default="a blue star")
    p.add_argument("--expect", default="blue-star.png", help="the file the query must find first")
    p.add_argument("--image", help="an indexed image to search by (picked from disk): it must come first")
    p.add_argument("--screenshot", required=True)
    p.add_argument("--phone-screenshot")
    p.add_argument("--key", help="the server's API key: only the key checks run")
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
        if args.key:
            check_key(driver, wait, args.url, args.key)
            return
        driver.get(args.url)
        wait.until(lambda d: "photo" in d.find_element(By.ID, "library").text)
        library = driver.find_element(By.ID, "library").text
        print(f"empty state: {library}")
        if driver.switch_to.active_element.get_attribute("id") != "query":
            fail("the query box does not have the focus on load")

        box = driver.find_element(By.ID, "query")
        box.send_keys(args.query)
        box.send_keys(Keys.ENTER)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".hit") and "hits for" in d.find_element(By.ID, "status").text)
        # Hits far below the best are folded away; unfolded, they follow.
        folded = driver.find_element(By.ID, "weaker")
        if folded.is_displayed():
            print(folded.text)
            folded.click()
        hits = driver.find_elements(By.CSS_SELECTOR, ".hit")
        paths = [h.find_element(By.CSS_SELECTOR, ".path").get_attribute("title") for h in hits]
        print(f"query {args.query!r}: {len(hits)} hits, first {paths[0]!r}; status: {driver.find_element(By.ID, 'status').text}")
        if not paths[0].endswith(args.expect):
            fail(f"the best hit for {args.query!r} is {paths[0]!r}, not {args.expect!r}")
        if "q=" not in driver.current_url:
            fail(f"the query is not in the address: {driver.current_url}")
        if driver.find_element(By.ID, "empty").is_displayed():
            fail("the empty state stays with results shown")
        wait.until(lambda d: d.execute_script(
            "return Array.from(document.querySelectorAll('.hit img')).every(i => i.complete && i.naturalWidth > 0)"))
        driver.save_screenshot(args.screenshot)

        # The viewer: the full image and its details; arrows move; Esc closes and the focus returns to the grid.
        hits[0].find_element(By.CSS_SELECTOR, "a").click()
        wait.until(lambda d: d.execute_script("return document.getElementById('viewer').open"))
        wait.until(lambda d: d.execute_script("const i = document.getElementById('viewer-image'); return i.complete && i.naturalWidth > 0"))
        caption = driver.find_element(By.ID, "viewer-caption").text
        print(f"viewer: {caption}")
        if args.expect not in caption or "score" not in caption:
            fail(f"the viewer's caption {caption!r} does not name the file and its score")
        if len(hits) > 1:
            driver.switch_to.active_element.send_keys(Keys.ARROW_RIGHT)
            wait.until(lambda d: d.find_element(By.ID, "viewer-caption").text != caption)
        driver.switch_to.active_element.send_keys(Keys.ESCAPE)
        wait.until(lambda d: not d.execute_script("return document.getElementById('viewer').open"))
        if not driver.execute_script("return document.activeElement.closest('.hit') !== null"):
            fail("closing the viewer does not give the focus back to the grid")

        results = Axe(driver)
        results.inject()
        found = results.run()
        serious = [v for v in found["violations"] if v.get("impact") in ("serious", "critical")]
        for v in found["violations"]:
            print(f"axe: {v.get('impact')}: {v['id']}: {v['help']}: {[n['target'] for n in v['nodes']][:5]}")
        if serious:
            fail(f"{len(serious)} serious or critical accessibility violations: {', '.join(v['id'] for v in serious)}")

        if len(hits) > 1:
            other = paths[1]
            hits[1].find_element(By.CSS_SELECTOR, "button.like").click()
            wait.until(lambda d: "like=" in d.current_url and "photos like" in d.find_element(By.ID, "status").text)
            status = driver.find_element(By.ID, "status").text
            first = first_path(driver)
            print(f"more like {other!r}: first {first!r}; status: {status}")
            if first != other:
                fail(f"'more like this' on {other!r} put {first!r} first")
            if os.path.basename(other) not in status:
                fail(f"'more like this' does not name the file: {status!r}")
            if not driver.execute_script("return document.activeElement.closest('.hit') !== null"):
                fail("the focus is lost after 'more like this'")
            driver.back()
            wait.until(lambda d: "like=" not in d.current_url and first_path(d) == paths[0])

        if args.image:
            picker = driver.find_element(By.ID, "file")
            driver.execute_script("arguments[0].hidden = false", picker)
            driver.find_element(By.ID, "query").clear()
            picker.send_keys(os.path.abspath(args.image))
            wait.until(lambda d: "photos like " + os.path.basename(args.image) in d.find_element(By.ID, "status").text)
            first = first_path(driver)
            print(f"search by {args.image!r}: first {first!r}")
            if os.path.basename(first) != os.path.basename(args.image):
                fail(f"searching by {args.image!r} put {first!r} first")

        # Dropped on the page, and pasted: the same image, handed over as the browser hands files to the page.
        if args.image:
            for kind in ("drop", "paste"):
                driver.find_element(By.ID, "query").clear()
                driver.execute_script("""
                    const [kind, name, url] = arguments;
                    fetch(url).then(r => r.blob()).then(blob => {
                        const data = new DataTransfer();
                        data.items.add(new File([blob], name, { type: "image/png" }));
                        if (kind === "drop") {
                            document.dispatchEvent(new DragEvent("dragenter", { dataTransfer: data, bubbles: true }));
                            document.dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
                        } else {
                            document.dispatchEvent(new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true }));
                        }
                    });
                """, kind, "dropped-" + os.path.basename(args.image), image_url(driver, args.image))
                # Named apart from the picked file, so the status shows this search's answer, not the last one's.
                wanted = "photos like " + ("dropped-" + os.path.basename(args.image) if kind == "drop" else "the pasted image")
                wait.until(lambda d: wanted in d.find_element(By.ID, "status").text)
                first = first_path(driver)
                print(f"{kind}: first {first!r}")
                if os.path.basename(first) != os.path.basename(args.image):
                    fail(f"a {kind}ped {args.image!r} put {first!r} first")
                if not driver.find_element(By.ID, "drop").get_attribute("hidden") and kind == "drop":
                    fail("the drop overlay stays after the drop")

        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
        background = driver.execute_script("return getComputedStyle(document.body).backgroundColor")
        print(f"dark theme: body {background}")
        channels = [int(x) for x in background[background.index("(") + 1:background.index(")")].split(",")[:3]]
        if sum(channels) > 3 * 80:
            fail(f"the dark theme is not dark: {background}")

        if args.phone_screenshot:
            driver.set_window_size(390, 844)
            driver.get(args.url.rstrip("/") + "/?q=" + args.query.replace(" ", "+"))
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".hit"))
            wait.until(lambda d: d.execute_script(
                "return Array.from(document.querySelectorAll('.hit img')).every(i => i.complete && i.naturalWidth > 0)"))
            columns = driver.execute_script("return getComputedStyle(document.getElementById('results')).gridTemplateColumns.split(' ').length")
            print(f"phone: {columns} columns")
            if columns != 2:
                fail(f"{columns} columns at 390 px, not 2")
            driver.save_screenshot(args.phone_screenshot)
        print(f"screenshots: {args.screenshot} {args.phone_screenshot or ''}")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
