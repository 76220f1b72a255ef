"""One library function per pipeline stage, shared by ``jrs build`` and each stage's own command.

Stages exchange plain data (a :class:`~toolkit.stages.step_table.StepTable`: a sequence of
:class:`~toolkit.stages.read.StepRecord` held column by column; vector sets on disk; dataclasses); options are dataclasses whose defaults are the only ones (the CLI reads them from there):

=====================  ===========================================  ==========================
stage                  function                                     options
=====================  ===========================================  ==========================
read + split           :func:`toolkit.stages.read.read_steps`       :class:`ReadOptions`
tokenize               :func:`toolkit.stages.text.tokenize_texts`   :class:`TokenizeOptions`
train Word2Vec         :func:`toolkit.stages.text.train_word2vec_model`  ``Word2VecConfig``
step vectors           :func:`toolkit.stages.text.write_step_vectors`
image features         :func:`toolkit.stages.images.write_image_features`  :class:`ImageOptions`
train mapping          :func:`toolkit.stages.mapping.train_mapping_model`  ``MappingConfig``
evaluate               :func:`toolkit.stages.evaluate.evaluate_mapping`  :class:`EvaluateOptions`
=====================  ===========================================  ==========================
"""
