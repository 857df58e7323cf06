"""The service's web page in a real headless browser (Debian's chromium through selenium): upload a
moth photo, see the montage and every hierarchy level; the screenshot is read back with tesseract
OCR and must show the predicted species."""
import re
import shutil
import subprocess

import cv2
import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as ChromeService
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

import inference
import make_folds
from cellpipe.demo.moths import write_moths
from cellpipe.serve.process import running_server
from conftest import untrained_run

CHROMIUM, CHROMEDRIVER, TESSERACT = (shutil.which(b) for b in ("chromium", "chromedriver", "tesseract"))


@pytest.fixture(scope="module")
def browser():
    # make test installs these (Makefile: apt); missing ones are a failed set-up, not a skip
    assert CHROMIUM and CHROMEDRIVER and TESSERACT, "chromium, chromedriver and tesseract are needed: run make install"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1100,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=ChromeService(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def _words(text: str) -> str:
    return re.sub(r"[^a-z]+", " ", text.lower()).strip()


def test_upload_a_moth_photo_and_read_the_species_off_the_screenshot(tmp_path, browser):
    moths = write_moths(tmp_path / "moths", per_species=12, rare=2, size=24)
    make_folds.main(str(moths / "image_folder"), out_dir=str(tmp_path / "csv"), n_folds=2, source="folder",
                    grouped=False)
    run = untrained_run(["--config", "configs/classify.yml", "--overlay", "configs/data/moths.yml", "--overlay",
                         "configs/tiny.yml", "--logdir", str(tmp_path / "run"),
                         f"--data_params/root={moths / 'image_folder'}", "--data_params/min_samples=3",
                         f"--data_params/train_csv={tmp_path / 'csv' / 'train_0.csv'}",
                         f"--data_params/valid_csv={tmp_path / 'csv' / 'valid_0.csv'}"])
    package = inference.export(model=str(run), out=str(tmp_path / "pkg"))
    photo = moths / "image_folder" / "Noctua pronuba" / "0003.png"
    with running_server(package) as url:
        expected = httpx.post(url + "/predict", files=[("image", (photo.name, photo.read_bytes()))],
                              timeout=60).json()["predictions"][0]
        browser.get(url + "/")
        WebDriverWait(browser, 60).until(ec.text_to_be_present_in_element((By.ID, "card"), "hierarchy model"))
        browser.find_element(By.ID, "files").send_keys(str(photo))
        browser.find_element(By.ID, "submit").click()
        WebDriverWait(browser, 60).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-done"))
        assert browser.find_element(By.ID, "error").text == ""
        result = browser.find_element(By.CLASS_NAME, "result")
        shot = tmp_path / "page.png"
        assert browser.save_screenshot(str(shot))
        levels = [r.text for r in result.find_elements(By.CLASS_NAME, "label")]
        montage = result.find_element(By.CLASS_NAME, "montage")
        assert browser.execute_script("return arguments[0].naturalWidth", montage) == 256
        rect = montage.rect  # CSS pixels = screenshot pixels (headless, device pixel ratio 1)
    # channel files go in the model's order: by its channel names (HPA stains), else by their numbers
    order = browser.execute_script("""
        card = {channel_names: arguments[0]};
        return channelOrder(arguments[1].map((n) => new File([""], n))).map((f) => f.name);""",
        ["red", "green", "blue", "yellow"], ["s_blue.png", "s_yellow.png", "s_red.png", "s_green.png"])
    assert order == ["s_red.png", "s_green.png", "s_blue.png", "s_yellow.png"]
    order = browser.execute_script("""
        card = {channel_names: arguments[0]};
        return channelOrder(arguments[1].map((n) => new File([""], n))).map((f) => f.name);""",
        [f"channel {c}" for c in range(1, 12)], [f"B02_s1_w{c}.png" for c in (10, 2, 11, 1)])
    assert order == ["B02_s1_w1.png", "B02_s1_w2.png", "B02_s1_w10.png", "B02_s1_w11.png"]
    assert result.find_element(By.CLASS_NAME, "pred").text == expected["pred"]
    # every level, with the joint decoding's names and probabilities
    assert [t.split(":")[0] for t in levels] == ["species", "genus", "group", "family"]
    assert f"genus: {expected['pred_genus']} {100 * expected['prob_genus']:.1f}%" in levels
    ocr = subprocess.run([TESSERACT, str(shot), "stdout"], capture_output=True, text=True, check=True).stdout
    assert _words(expected["pred"]) in _words(ocr), ocr
    # the montage is drawn: its region of the screenshot holds the moth on its background, not blank page
    page = cv2.imread(str(shot))
    y, x = int(rect["y"]), int(rect["x"])
    crop = page[y:y + int(rect["height"]), x:x + int(rect["width"])]
    assert crop.shape[0] > 100 and crop.std() > 5 and crop.mean() < 240
