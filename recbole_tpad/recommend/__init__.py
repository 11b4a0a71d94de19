"""Recommendations from a trained model: ``load_recommender`` (Python) and ``python -m recbole_tpad.recommend``."""

from recbole_tpad.recommend.recommender import Recommendation, SessionRecommender, load_recommender

__all__ = ["Recommendation", "SessionRecommender", "load_recommender"]
