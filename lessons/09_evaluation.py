# %% [markdown]
# # Lesson 09 — Evaluation: a clinician's view
#
# **What this lesson teaches**
# - the confusion matrix, and why accuracy alone misleads on imbalanced data;
# - sensitivity (of the sick, how many we catch) and specificity (of the healthy,
#   how many we clear), and the trade between them as the decision threshold moves;
# - the ROC curve and its area (ROC-AUC);
# - choosing the threshold on the validation split — by Youden's J, by a required
#   sensitivity, or by what each kind of mistake costs — and reporting the test split
#   once, at that threshold;
# - what the numbers mean at the bedside: a missed pneumonia against a false alarm,
#   and how the prevalence changes what a positive result means.
#
# Run it: `python lessons/09_evaluation.py [--quick] [--out FOLDER] [--data pneumoniamnist.npz]`.
# It trains a small ChestXrayCNN first with `minicnn.xray.train.fit` (the recipe of
# `minicnn train`); on the SYNTHETIC default data the figures describe synthetic
# images, not patients.
# Practise it: exercise 10 (sensitivity and specificity), `minicnn grade 10`.

# %%
import numpy as np

from minicnn.xray import metrics, viz

from minicnn.lesson import setup, save, saved, train_classifier, plt

args, OUT = setup("09_evaluation", "Lesson 09: sensitivity, specificity, ROC, thresholds",
                  data=True, train=True)

# %%
result = train_classifier(args, OUT)
splits, positive = result.splits, result.positive
note = "SYNTHETIC data" if splits.info["synthetic"] else ""
classes = splits.train.classes
y_val = (splits.val.labels == positive).astype(int)            # 1 = pneumonia
y_test = (splits.test.labels == positive).astype(int)
p_val, p_test = result.val_probs[:, positive], result.test_probs[:, positive]
print(f"\nscores: P({classes[positive]}) for {len(y_val)} validation and {len(y_test)} test images")

# %% [markdown]
# ## The confusion matrix, and the accuracy trap
#
# At threshold 0.5 (call it pneumonia when P ≥ 0.5), count the four outcomes.
# Compare with a "network" that answers pneumonia for everyone: on imbalanced
# data its accuracy looks respectable, and it never clears a single healthy child.

# %%
at_half = metrics.binary_metrics(y_val, p_val, threshold=0.5)
print(f"validation at 0.5: TP {at_half['tp']}, FN {at_half['fn']}, TN {at_half['tn']}, "
      f"FP {at_half['fp']}")
print(f"  accuracy {at_half['accuracy']:.3f}, sensitivity {at_half['sensitivity']:.3f}, "
      f"specificity {at_half['specificity']:.3f}")
lazy = metrics.binary_metrics(y_val, np.ones_like(p_val), threshold=0.5)
print(f"'always pneumonia': accuracy {lazy['accuracy']:.3f}, sensitivity "
      f"{lazy['sensitivity']:.3f}, specificity {lazy['specificity']:.3f}")
cm = metrics.confusion_matrix(y_val, (p_val >= 0.5).astype(int))
saved(viz.confusion_matrix(cm, ["normal", "pneumonia"], f"{OUT}/confusion.png",
                           title="Validation, threshold 0.5", note=note))

# %% [markdown]
# ## The ROC curve
#
# Sweep the threshold from high (nobody is called sick) to low (everybody is).
# Each threshold gives one (1 − specificity, sensitivity) point; together they
# trace the ROC curve. Its area, the AUC, is the probability that a random sick
# image scores above a random healthy one: 0.5 is a coin, 1.0 is perfect. It does
# not depend on the threshold — which is why training picks checkpoints by it.

# %%
fpr, tpr, thresholds = metrics.roc_curve(y_val, p_val)
auc = metrics.roc_auc(y_val, p_val)
print(f"validation ROC-AUC {auc:.3f} ({len(thresholds) - 1} distinct thresholds)")

# %% [markdown]
# ## Choosing the threshold — on validation, never on test
#
# Three sensible rules:
# - **Youden's J**: maximise sensitivity + specificity − 1 (treat both errors alike);
# - **screening**: the highest threshold that still catches 95% of pneumonias;
# - **cost**: a missed pneumonia (a child sent home with an untreated infection, who
#   may come back sicker, or septic) is far worse than a false alarm (an extra
#   review or a course of antibiotics). Say a miss costs 10 false alarms: choose the
#   threshold with the smallest expected cost `10·FN + FP`.

# %%
def cost(t, miss_cost=10.0):
    m = metrics.binary_metrics(y_val, p_val, threshold=t)
    return miss_cost * m["fn"] + m["fp"]


candidates = thresholds[1:]                                  # skip +inf (nobody positive)
rules = {
    "Youden's J": metrics.youden_threshold(y_val, p_val),
    "sensitivity >= 95%": float(candidates[np.argmax(tpr[1:] >= 0.95)]),
    "miss costs 10 false alarms": float(candidates[np.argmin([cost(t) for t in candidates])]),
    "the default 0.5": 0.5,
}
print(f"{'rule':28s} {'threshold':>9s} | on TEST: {'sens':>5s} {'spec':>5s} {'missed':>6s} "
      f"{'false alarms':>12s}")
for name, t in rules.items():
    m = metrics.binary_metrics(y_test, p_test, threshold=t)
    print(f"{name:28s} {t:9.3f} |         {m['sensitivity']:5.2f} {m['specificity']:5.2f} "
          f"{m['fn']:6d} {m['fp']:12d}")
print(f"(test: {int(y_test.sum())} pneumonia, {int((1 - y_test).sum())} normal; "
      "thresholds chosen on validation)")

youden = rules["Youden's J"]
at_youden = metrics.binary_metrics(y_val, p_val, threshold=youden)
saved(viz.roc_curve(fpr, tpr, auc, f"{OUT}/roc.png",
                    operating_point=(1 - at_youden["specificity"], at_youden["sensitivity"], youden),
                    title="Validation ROC, Youden's threshold", note=note))

grid = np.linspace(0.0, 1.0, 41 if args.quick else 101)
curves = np.array([[metrics.binary_metrics(y_val, p_val, threshold=t)[k]
                    for k in ("sensitivity", "specificity")] + [cost(t)] for t in grid])
fig, ax = plt.subplots(figsize=(9, 3.8))
ax.plot(grid, curves[:, 0], lw=2, label="sensitivity")
ax.plot(grid, curves[:, 1], lw=2, label="specificity")
for (name, t), colour in zip(rules.items(), ["C2", "C3", "C4", "gray"]):
    ax.axvline(t, color=colour, ls=":", lw=1.5, label=f"{name}: {t:.2f}")
ax.set_xlabel("threshold on P(pneumonia)")
ax.set_ylim(-0.02, 1.02)
twin = ax.twinx()
twin.plot(grid, curves[:, 2], "k--", lw=1, label="cost 10*FN + FP")
twin.set_ylabel("expected cost (validation)")
lines = ax.get_legend_handles_labels()
more = twin.get_legend_handles_labels()
ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="upper left",
          bbox_to_anchor=(1.12, 1.0))
ax.set_title("choosing a threshold on validation" + (f" ({note})" if note else ""), fontsize=10)
save(fig, OUT, "thresholds.png")

# %% [markdown]
# ## What a positive result means: prevalence
#
# Sensitivity and specificity belong to the test. What a doctor wants to know is
# different: *given* a positive result, how likely is pneumonia (the positive
# predictive value, PPV)? By Bayes' rule that depends on how common pneumonia is
# among the people tested:
#
#     PPV = sens·prev / (sens·prev + (1 − spec)·(1 − prev))

# %%
m = metrics.binary_metrics(y_test, p_test, threshold=youden)
sens, spec = m["sensitivity"], m["specificity"]
for prev in (0.02, 0.10, 0.30, 0.60):
    ppv = sens * prev / (sens * prev + (1 - spec) * (1 - prev))
    npv = spec * (1 - prev) / (spec * (1 - prev) + (1 - sens) * prev)
    print(f"prevalence {prev:4.0%}: a positive result means pneumonia {ppv:5.1%} of the time; "
          f"a negative one rules it out {npv:5.1%} of the time")
print("The same network: in a busy paediatric ward most alarms are real; in screening of "
      "mostly healthy children most are false.")
