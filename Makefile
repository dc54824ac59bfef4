# make demo: train SSD300-MobileNetV1 on the synthetic shapes set, evaluate it, draw its predictions (runs/demo/).
# make test: the whole test suite. Both set up .venv on first use.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DATA := data/shapes
DEMO_RUN := runs/demo

.PHONY: demo demo-frcnn demo-dogs demo-distill test lint install

install: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (set PYTHON=...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The demos' datasets: written once with these settings and checked on every call (--reuse keeps them when the
# recorded settings match; make_synthetic refuses a folder it did not write).
.PHONY: shapes-data dogs-data faces-data lfw-data unlabeled-data
shapes-data: | $(STAMP)
	@$(PY) tools/make_synthetic.py coco --out $(DEMO_DATA) --train 4000 --val 200 --seed 0 --reuse

# make demo replaces only its own previous run (marked by DEMO_MARK once it finished), and says so.
DEMO_MARK := $(DEMO_RUN)/.written-by-make-demo

demo: $(STAMP) shapes-data
	@if [ -e $(DEMO_RUN) ] && [ ! -e $(DEMO_MARK) ]; then \
		echo "error: $(DEMO_RUN) exists but is not a finished make demo run: move it away (nothing was changed)"; \
		exit 1; fi
	@if [ -e $(DEMO_MARK) ]; then echo "replacing the previous make demo run in $(DEMO_RUN)"; rm -rf $(DEMO_RUN); fi
	$(PY) tools/train.py configs/demo_shapes_ssd.yaml --out $(DEMO_RUN)
	$(PY) tools/eval.py configs/demo_shapes_ssd.yaml --checkpoint $(DEMO_RUN)/checkpoints/last.ckpt --out $(DEMO_RUN)/eval
	cat $(DEMO_RUN)/eval/coco_eval.txt
	$(PY) tools/predict.py configs/demo_shapes_ssd.yaml --checkpoint $(DEMO_RUN)/checkpoints/last.ckpt \
		$$(ls $(DEMO_DATA)/val2017/*.jpg | head -n 16) --out $(DEMO_RUN)/pictures
	touch $(DEMO_MARK)
	@echo "demo done: $(DEMO_RUN)/eval/metrics.json; ground truth and detections in $(DEMO_RUN)/eval/pictures," \
		"precision-recall in $(DEMO_RUN)/eval/pr_curves.png, predictions in $(DEMO_RUN)/pictures"

# The other demos: Faster-RCNN on the same shapes set, and the classifier on the synthetic Stanford Dogs set.
# Each writes its run once: a finished run (its metrics.json) is kept; delete the folder to train again.
demo-frcnn: runs/demo_frcnn/metrics.json
runs/demo_frcnn/metrics.json: | $(STAMP) shapes-data
	$(PY) tools/train.py configs/demo_shapes_frcnn.yaml --out runs/demo_frcnn

dogs-data: | $(STAMP)
	@$(PY) tools/make_synthetic.py dogs --out data/dogs --reuse

demo-dogs: runs/demo_dogs/metrics.json
runs/demo_dogs/metrics.json: | $(STAMP) dogs-data
	$(PY) tools/train.py configs/demo_dogs.yaml --out runs/demo_dogs

# Distillation on the synthetic faces: a face-attribute teacher (MobileNetV1 0.75) and its half-width student, from
# the labelled split's images and from an unlabelled folder alone; an identity teacher and its half-width embedder.
# Each step runs once: a run whose metrics.json exists is kept (delete its folder to run it again).
FACES := data/celeba_synthetic
LFW := data/lfw
UNLABELED := data/faces_unlabeled
ATTR_TEACHER := runs/demo_face_attr_teacher
ID_TEACHER := runs/demo_face_id_teacher

faces-data: | $(STAMP)
	@$(PY) tools/make_synthetic.py celeba --out $(FACES) --reuse

lfw-data: | $(STAMP)
	@$(PY) tools/make_synthetic.py lfw --out $(LFW) --reuse

unlabeled-data: | $(STAMP)
	@$(PY) tools/make_synthetic.py folder --out $(UNLABELED) --train 2400 --seed 1 --reuse

$(ATTR_TEACHER)/metrics.json: | faces-data
	$(PY) tools/train.py configs/demo_face_attr_teacher.yaml --out $(ATTR_TEACHER)

runs/demo_face_attr_distill/metrics.json: | $(ATTR_TEACHER)/metrics.json
	$(PY) tools/distill.py configs/demo_face_attr_distill.yaml --teacher $(ATTR_TEACHER)/checkpoints/last.ckpt \
		--out runs/demo_face_attr_distill

runs/demo_face_attr_distill_unlabeled/metrics.json: | $(ATTR_TEACHER)/metrics.json unlabeled-data
	$(PY) tools/distill.py configs/demo_face_attr_distill.yaml --teacher $(ATTR_TEACHER)/checkpoints/last.ckpt \
		distill.unlabeled=$(UNLABELED) distill.train_on=unlabeled --out runs/demo_face_attr_distill_unlabeled

$(ID_TEACHER)/metrics.json: | lfw-data
	$(PY) tools/train.py configs/demo_face_id_teacher.yaml --out $(ID_TEACHER)

runs/demo_face_embed_distill/metrics.json: | $(ID_TEACHER)/metrics.json
	$(PY) tools/distill.py configs/demo_face_embed_distill.yaml --teacher $(ID_TEACHER)/checkpoints/last.ckpt \
		--out runs/demo_face_embed_distill

demo-distill: runs/demo_face_attr_distill/metrics.json runs/demo_face_attr_distill_unlabeled/metrics.json \
		runs/demo_face_embed_distill/metrics.json
	$(PY) tools/compare_runs.py $(ATTR_TEACHER) runs/demo_face_attr_distill runs/demo_face_attr_distill_unlabeled \
		$(ID_TEACHER) runs/demo_face_embed_distill

test: $(STAMP)
	$(PY) -m pytest -q --durations=15

lint: $(STAMP)
	$(VENV)/bin/ruff check backbone tasks tools tests
	$(VENV)/bin/ruff format --check backbone tasks tools tests
