"""``kagglekit demo``: a mini-competition built from scikit-image's IHC image, trained and submitted on CPU.

    data.py      the competition folder (train/, test/, train.csv, sample_submission.csv) and its answers
    train.py     a small U-Net trained for a fixed number of steps through kagglekit.train.fit; threshold
                 picked on the held-out fold; the kernel configs written from dicts and read back
    run.py       the whole demo: data, training, the inference notebook headless
                 (:func:`kagglekit.delivery.notebook.run_kernel`), the score
    notebook.py  moved to kagglekit.delivery.notebook (this path warns until the next release)
"""
